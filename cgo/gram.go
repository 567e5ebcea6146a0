package cgo

/*
#include <stdlib.h>
#include "ggml.h"
#include "ggml-backend.h"

typedef void (*mka_set_threads_fn)(ggml_backend_t, int);

// mka_cpu_backend starts ggml's CPU device as the registry has it (the
// CPU variant in use, see LoadCPUBackend) with n threads.
static ggml_backend_t mka_cpu_backend(int n) {
	ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
	if (dev == NULL) {
		return NULL;
	}
	ggml_backend_t be = ggml_backend_dev_init(dev, NULL);
	if (be == NULL) {
		return NULL;
	}
	ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
	mka_set_threads_fn fn = (mka_set_threads_fn)ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
	if (fn != NULL) {
		fn(be, n);
	}
	return be;
}

// mka_gram_graph builds, in ctx, G = XᵀX and C = XᵀY for X and Y holding
// r rows of d values (ne0 = d): both are transposed to rows-contiguous
// copies, so that ggml's mul_mat contracts over the rows.
static struct ggml_cgraph *mka_gram_graph(struct ggml_context *ctx, int64_t d, int64_t r,
		struct ggml_tensor **x, struct ggml_tensor **y, struct ggml_tensor **g, struct ggml_tensor **c) {
	*x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, d, r);
	*y = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, d, r);
	struct ggml_tensor *xt = ggml_cont(ctx, ggml_transpose(ctx, *x));
	struct ggml_tensor *yt = ggml_cont(ctx, ggml_transpose(ctx, *y));
	*g = ggml_mul_mat(ctx, xt, xt);
	*c = ggml_mul_mat(ctx, yt, xt);
	struct ggml_cgraph *gf = ggml_new_graph(ctx);
	ggml_build_forward_expand(gf, *g);
	ggml_build_forward_expand(gf, *c);
	return gf;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// gramRowAlign pads the rows to a multiple of 16 (zero rows change neither
// product) so that ggml's CPU mul_mat takes its tiled sgemm (llamafile's
// tinyBLAS), which wants the contracted length a multiple of the vector
// width.
const gramRowAlign = 16

// Gram computes the products of a least-squares alignment on ggml's CPU
// device, multithreaded and vectorised: for row-major float32 X and Y of
// rows × d values,
//
//	G = XᵀX,  C = XᵀY   (d × d each, row-major)
//
// in one graph. Its buffers are kept for the next call of the same shape.
// Not safe for concurrent use; Close frees it.
type Gram struct {
	be      C.ggml_backend_t
	ctx     *C.struct_ggml_context
	buf     C.ggml_backend_buffer_t
	gf      *C.struct_ggml_cgraph
	x, y    *C.struct_ggml_tensor
	g, c    *C.struct_ggml_tensor
	d, rows int // shape of the graph built (rows padded)
}

// NewGram starts a Gram on the CPU device with the given threads.
func NewGram(threads int) (*Gram, error) {
	Init()
	be := C.mka_cpu_backend(C.int(max(threads, 1)))
	if be == nil {
		return nil, errors.New("ggml: no CPU device")
	}
	return &Gram{be: be}, nil
}

// build makes the graph for d columns and padded rows r.
func (p *Gram) build(d, r int) error {
	p.free()
	params := C.struct_ggml_init_params{
		mem_size: C.size_t(C.ggml_tensor_overhead()*16 + C.ggml_graph_overhead()),
		no_alloc: true,
	}
	p.ctx = C.ggml_init(params)
	if p.ctx == nil {
		return errors.New("ggml: cannot create a context")
	}
	p.gf = C.mka_gram_graph(p.ctx, C.int64_t(d), C.int64_t(r), &p.x, &p.y, &p.g, &p.c)
	p.buf = C.ggml_backend_alloc_ctx_tensors(p.ctx, p.be)
	if p.buf == nil {
		p.free()
		return fmt.Errorf("ggml: cannot allocate %d×%d products", d, r)
	}
	p.d, p.rows = d, r
	return nil
}

// free drops the graph and its buffers.
func (p *Gram) free() {
	if p.buf != nil {
		C.ggml_backend_buffer_free(p.buf)
		p.buf = nil
	}
	if p.ctx != nil {
		C.ggml_free(p.ctx)
		p.ctx = nil
	}
	p.d, p.rows = 0, 0
}

// Compute sets g to XᵀX and c to XᵀY; x and y hold rows × d values, g and
// c d × d.
func (p *Gram) Compute(x, y []float32, rows, d int, g, c []float32) error {
	if rows <= 0 || d <= 0 || len(x) != rows*d || len(y) != rows*d || len(g) != d*d || len(c) != d*d {
		return fmt.Errorf("gram: %d, %d values for %d rows of %d, outputs %d, %d", len(x), len(y), rows, d, len(g), len(c))
	}
	r := (rows + gramRowAlign - 1) / gramRowAlign * gramRowAlign
	if d != p.d || r != p.rows {
		if err := p.build(d, r); err != nil {
			return err
		}
	}
	n := C.size_t(rows * d * 4)
	pad := C.size_t((r - rows) * d * 4)
	C.ggml_backend_tensor_set(p.x, unsafe.Pointer(&x[0]), 0, n)
	C.ggml_backend_tensor_set(p.y, unsafe.Pointer(&y[0]), 0, n)
	if pad > 0 {
		C.ggml_backend_tensor_memset(p.x, 0, n, pad)
		C.ggml_backend_tensor_memset(p.y, 0, n, pad)
	}
	if st := C.ggml_backend_graph_compute(p.be, p.gf); st != C.GGML_STATUS_SUCCESS {
		return fmt.Errorf("gram: ggml graph compute failed (status %d)", int(st))
	}
	C.ggml_backend_tensor_get(p.g, unsafe.Pointer(&g[0]), 0, C.size_t(d*d*4))
	C.ggml_backend_tensor_get(p.c, unsafe.Pointer(&c[0]), 0, C.size_t(d*d*4))
	return nil
}

// Close frees the graph and the backend. It is nil-safe.
func (p *Gram) Close() {
	if p == nil {
		return
	}
	p.free()
	if p.be != nil {
		C.ggml_backend_free(p.be)
		p.be = nil
	}
}
