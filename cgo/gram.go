package cgo

/*
#include <stdlib.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "pool.h"

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

// mka_product_graph builds, in ctx, C = XᵀY for X of r rows of dx values
// and Y of r rows of dy values: C[i][j] = Σ_k X[k][i] Y[k][j], dx rows of
// dy values.
static struct ggml_cgraph *mka_product_graph(struct ggml_context *ctx, int64_t dx, int64_t dy, int64_t r,
		struct ggml_tensor **x, struct ggml_tensor **y, struct ggml_tensor **c) {
	*x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, dx, r);
	*y = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, dy, r);
	struct ggml_tensor *xt = ggml_cont(ctx, ggml_transpose(ctx, *x));
	struct ggml_tensor *yt = ggml_cont(ctx, ggml_transpose(ctx, *y));
	*c = ggml_mul_mat(ctx, yt, xt);
	struct ggml_cgraph *gf = ggml_new_graph(ctx);
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

// padRows returns rows rounded up to a multiple of gramRowAlign.
func padRows(rows int) int { return (rows + gramRowAlign - 1) / gramRowAlign * gramRowAlign }

// cpuGraph is one small ggml graph on the CPU device with the buffers of
// its tensors, built again when the shape changes.
type cpuGraph struct {
	be  C.ggml_backend_t
	ctx *C.struct_ggml_context
	buf C.ggml_backend_buffer_t
	gf  *C.struct_ggml_cgraph
	// threads were asked for, curThreads are in use (useThreads).
	threads, curThreads int
}

// start starts the CPU device with the given threads, on the process's
// pool of that many (pool.c: the one a decode's capture hook, where the
// alignment statistics are computed, already runs on).
func (g *cpuGraph) start(threads int) error {
	Init()
	n := C.int(max(threads, 1))
	if g.be = C.mka_cpu_backend(n); g.be == nil {
		return errors.New("ggml: no CPU device")
	}
	C.mka_pool_use(g.be, n)
	g.threads, g.curThreads = int(n), int(n)
	return nil
}

// build replaces the graph with the one build makes in a fresh context
// and allocates its tensors.
func (g *cpuGraph) build(build func(ctx *C.struct_ggml_context) *C.struct_ggml_cgraph) error {
	g.free()
	params := C.struct_ggml_init_params{
		mem_size: C.size_t(C.ggml_tensor_overhead()*16 + C.ggml_graph_overhead()),
		no_alloc: true,
	}
	if g.ctx = C.ggml_init(params); g.ctx == nil {
		return errors.New("ggml: cannot create a context")
	}
	g.gf = build(g.ctx)
	if g.buf = C.ggml_backend_alloc_ctx_tensors(g.ctx, g.be); g.buf == nil {
		g.free()
		return errors.New("ggml: cannot allocate the products' buffers")
	}
	return nil
}

// compute runs the graph.
func (g *cpuGraph) compute() error {
	g.useThreads()
	if st := C.mka_graph_compute(g.be, g.gf); st != C.GGML_STATUS_SUCCESS {
		return fmt.Errorf("ggml graph compute failed (status %d)", int(st))
	}
	return nil
}

// free drops the graph and its buffers.
func (g *cpuGraph) free() {
	if g.buf != nil {
		C.ggml_backend_buffer_free(g.buf)
		g.buf = nil
	}
	if g.ctx != nil {
		C.ggml_free(g.ctx)
		g.ctx = nil
	}
	g.gf = nil
}

// close frees the graph and the backend.
func (g *cpuGraph) close() {
	g.free()
	if g.be != nil {
		C.ggml_backend_free(g.be)
		g.be = nil
	}
}

// setRows copies rows × cols float32 values into t and zeroes its padding
// rows (t holds padded × cols).
func setRows(t *C.struct_ggml_tensor, v []float32, rows, padded, cols int) {
	n := C.size_t(rows * cols * 4)
	C.ggml_backend_tensor_set(t, unsafe.Pointer(&v[0]), 0, n)
	if padded > rows {
		C.ggml_backend_tensor_memset(t, 0, n, C.size_t((padded-rows)*cols*4))
	}
}

// Gram computes the products of a least-squares alignment on ggml's CPU
// device, multithreaded and vectorised: for row-major float32 X and Y of
// rows × d values,
//
//	G = XᵀX,  C = XᵀY   (d × d each, row-major)
//
// in one graph. Its buffers are kept for the next call of the same shape.
// Not safe for concurrent use; Close frees it.
type Gram struct {
	g       cpuGraph
	x, y    *C.struct_ggml_tensor
	gt, c   *C.struct_ggml_tensor
	d, rows int // shape of the graph built (rows padded)
}

// NewGram starts a Gram on the CPU device with the given threads.
func NewGram(threads int) (*Gram, error) {
	p := &Gram{}
	if err := p.g.start(threads); err != nil {
		return nil, err
	}
	return p, nil
}

// Compute sets g to XᵀX and c to XᵀY; x and y hold rows × d values, g and
// c d × d.
func (p *Gram) Compute(x, y []float32, rows, d int, g, c []float32) error {
	if rows <= 0 || d <= 0 || len(x) != rows*d || len(y) != rows*d || len(g) != d*d || len(c) != d*d {
		return fmt.Errorf("gram: %d, %d values for %d rows of %d, outputs %d, %d", len(x), len(y), rows, d, len(g), len(c))
	}
	r := padRows(rows)
	if d != p.d || r != p.rows {
		p.d, p.rows = 0, 0
		if err := p.g.build(func(ctx *C.struct_ggml_context) *C.struct_ggml_cgraph {
			return C.mka_gram_graph(ctx, C.int64_t(d), C.int64_t(r), &p.x, &p.y, &p.gt, &p.c)
		}); err != nil {
			return fmt.Errorf("gram: %d×%d: %w", d, r, err)
		}
		p.d, p.rows = d, r
	}
	setRows(p.x, x, rows, r, d)
	setRows(p.y, y, rows, r, d)
	if err := p.g.compute(); err != nil {
		return fmt.Errorf("gram: %w", err)
	}
	C.ggml_backend_tensor_get(p.gt, unsafe.Pointer(&g[0]), 0, C.size_t(d*d*4))
	C.ggml_backend_tensor_get(p.c, unsafe.Pointer(&c[0]), 0, C.size_t(d*d*4))
	return nil
}

// Close frees the graph and the backend. It is nil-safe.
func (p *Gram) Close() {
	if p != nil {
		p.g.close()
	}
}

// Product computes C = XᵀY on ggml's CPU device for row-major float32 X
// (rows × dx) and Y (rows × dy): C[i][j] = Σ_k X[k][i] Y[k][j], dx × dy,
// row-major. Folding an alignment into a weight (W ← Tᵀ W) is this
// product with X = T. Its graph and buffers are kept for the next call of
// the same shape (Release frees them). Not safe for concurrent use; Close
// frees it.
type Product struct {
	g          cpuGraph
	x, y, c    *C.struct_ggml_tensor
	dx, dy, rs int // shape of the graph built (rows padded)
}

// NewProduct starts a Product on the CPU device with the given threads.
func NewProduct(threads int) (*Product, error) {
	p := &Product{}
	if err := p.g.start(threads); err != nil {
		return nil, err
	}
	return p, nil
}

// Compute sets c to XᵀY.
func (p *Product) Compute(x, y []float32, rows, dx, dy int, c []float32) error {
	if rows <= 0 || dx <= 0 || dy <= 0 || len(x) != rows*dx || len(y) != rows*dy || len(c) != dx*dy {
		return fmt.Errorf("product: %d, %d values for %d rows of %d and %d, output %d", len(x), len(y), rows, dx, dy, len(c))
	}
	r := padRows(rows)
	if p.g.gf == nil || dx != p.dx || dy != p.dy || r != p.rs {
		if err := p.g.build(func(ctx *C.struct_ggml_context) *C.struct_ggml_cgraph {
			return C.mka_product_graph(ctx, C.int64_t(dx), C.int64_t(dy), C.int64_t(r), &p.x, &p.y, &p.c)
		}); err != nil {
			return fmt.Errorf("product: %d×%d over %d rows: %w", dx, dy, r, err)
		}
		p.dx, p.dy, p.rs = dx, dy, r
	}
	setRows(p.x, x, rows, r, dx)
	setRows(p.y, y, rows, r, dy)
	if err := p.g.compute(); err != nil {
		return fmt.Errorf("product: %w", err)
	}
	C.ggml_backend_tensor_get(p.c, unsafe.Pointer(&c[0]), 0, C.size_t(dx*dy*4))
	return nil
}

// Release frees the graph's buffers (the next Compute allocates them
// again), so that a Product kept between rare calls holds no memory.
func (p *Product) Release() { p.g.free() }

// Close frees the graph and the backend. It is nil-safe.
func (p *Product) Close() {
	if p != nil {
		p.g.close()
	}
}
