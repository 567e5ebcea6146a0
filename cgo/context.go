package cgo

/*
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"

extern _Bool mkaGoTensor(uintptr_t handle, int layer, float *data, int64_t ne0, int64_t rows);

typedef struct {
	uintptr_t handle;
	int want_inp;
	void *scratch;     // device-to-host copies and type conversions
	size_t scratch_size;
} mka_hook;

// mka_layer_of returns the block index of an "l_out-<i>" tensor, -1 for the
// block-0 input "inp_embd" (when wanted) and -2 for anything else.
static int mka_layer_of(const char *name, int want_inp) {
	if (strncmp(name, "l_out-", 6) == 0) {
		return atoi(name + 6);
	}
	if (want_inp && strcmp(name, "inp_embd") == 0) {
		return -1;
	}
	return -2;
}

static void *mka_scratch(mka_hook *h, size_t n) {
	if (h->scratch_size < n) {
		free(h->scratch);
		h->scratch = malloc(n);
		h->scratch_size = h->scratch ? n : 0;
	}
	return h->scratch;
}

static bool mka_cb_eval(struct ggml_tensor *t, bool ask, void *ud) {
	mka_hook *h = (mka_hook *)ud;
	int layer = mka_layer_of(t->name, h->want_inp);
	if (ask) {
		return layer >= -1;
	}
	if (layer < -1) {
		return true;
	}
	const int64_t ne0 = t->ne[0];
	const int64_t rows = ggml_nrows(t);
	const int64_t n = ne0 * rows;
	const bool host = t->buffer == NULL || ggml_backend_buffer_is_host(t->buffer);
	float *data = NULL;
	if (host && t->type == GGML_TYPE_F32 && ggml_is_contiguous(t)) {
		data = (float *)t->data;
	} else {
		if (!ggml_is_contiguous(t)) {
			return false;
		}
		const size_t nb = ggml_nbytes(t);
		const size_t need = nb + (t->type == GGML_TYPE_F32 ? 0 : (size_t)n * sizeof(float));
		char *buf = (char *)mka_scratch(h, need);
		if (buf == NULL) {
			return false;
		}
		ggml_backend_tensor_get(t, buf, 0, nb);
		if (t->type == GGML_TYPE_F32) {
			data = (float *)buf;
		} else {
			const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
			if (tr->to_float == NULL) {
				return false;
			}
			data = (float *)(buf + nb);
			tr->to_float(buf, data, n);
		}
	}
	return mkaGoTensor(h->handle, layer, data, ne0, rows);
}

static void mka_set_hook(struct llama_context_params *p, mka_hook *h) {
	p->cb_eval = mka_cb_eval;
	p->cb_eval_user_data = h;
}

static void mka_hook_free(mka_hook *h) {
	if (h) {
		free(h->scratch);
		free(h);
	}
}
*/
import "C"

import (
	"fmt"
	rcgo "runtime/cgo"
	"unsafe"
)

// Tensor is one captured graph tensor: Rows token rows of Cols floats.
// Layer is the decoder block whose output it is ("l_out-<Layer>"), or -1
// for the input of block 0 ("inp_embd"). Data aliases memory owned by
// llama.cpp and is valid only during the CaptureFunc call: copy what you
// keep.
type Tensor struct {
	Layer      int
	Rows, Cols int
	Data       []float32
}

// CaptureFunc receives captured tensors in graph order during Decode. The
// rows are the batch's tokens in batch order (the last block's rows only
// for tokens that asked for output, so ask for output on every token you
// want to see). Returning false aborts the decode.
type CaptureFunc func(t Tensor) bool

// ContextParams configures NewContext. Zero values take llama.cpp's
// defaults, except NUBatch, which defaults to NBatch so that one Decode is
// one graph evaluation and captured rows match the batch.
type ContextParams struct {
	NCtx    int // context size in tokens (0: the model's)
	NBatch  int // largest batch given to Decode (0: 512)
	NUBatch int // physical batch (0: NBatch)
	NSeqMax int // distinct sequences in one batch (0: 1)
	Threads int // CPU threads (0: llama.cpp's default)

	// Capture, when set, receives every block output and (with
	// CaptureInput) the block-0 input during Decode.
	Capture      CaptureFunc
	CaptureInput bool
}

// Context is a llama.cpp inference context.
type Context struct {
	p      *C.struct_llama_context
	model  *Model
	hook   *C.mka_hook
	handle rcgo.Handle
	nvocab int
	err    error
}

// NewContext creates an inference context for m.
func NewContext(m *Model, cp ContextParams) (*Context, error) {
	if m == nil || m.p == nil {
		return nil, ErrClosed
	}
	p := C.llama_context_default_params()
	if cp.NCtx > 0 {
		p.n_ctx = C.uint32_t(cp.NCtx)
	}
	if cp.NBatch > 0 {
		p.n_batch = C.uint32_t(cp.NBatch)
	}
	p.n_ubatch = p.n_batch
	if cp.NUBatch > 0 {
		p.n_ubatch = C.uint32_t(cp.NUBatch)
	}
	if cp.NSeqMax > 0 {
		p.n_seq_max = C.uint32_t(cp.NSeqMax)
	}
	if cp.Threads > 0 {
		p.n_threads = C.int32_t(cp.Threads)
		p.n_threads_batch = C.int32_t(cp.Threads)
	}
	p.no_perf = C.bool(true)
	// One KV stream for all sequences: llama.cpp then splits a batch into
	// ubatches in batch order (split_simple), so captured rows line up with
	// the tokens as they were added.
	p.kv_unified = C.bool(true)
	c := &Context{model: m, nvocab: m.NVocab()}
	if cp.Capture != nil {
		c.hook = (*C.mka_hook)(C.calloc(1, C.size_t(unsafe.Sizeof(C.mka_hook{}))))
		c.handle = rcgo.NewHandle(cp.Capture)
		c.hook.handle = C.uintptr_t(c.handle)
		if cp.CaptureInput {
			c.hook.want_inp = 1
		}
		C.mka_set_hook(&p, c.hook)
	}
	clearErrors()
	c.p = C.llama_init_from_model(m.p, p)
	if c.p == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w (n_ctx %d, n_batch %d; %s)", m.path, ErrContext, int(p.n_ctx), int(p.n_batch), llamaReason())
	}
	return c, nil
}

//export mkaGoTensor
func mkaGoTensor(handle C.uintptr_t, layer C.int, data *C.float, ne0, rows C.int64_t) C.bool {
	f := rcgo.Handle(handle).Value().(CaptureFunc)
	n := int(ne0) * int(rows)
	return C.bool(f(Tensor{
		Layer: int(layer),
		Rows:  int(rows),
		Cols:  int(ne0),
		Data:  unsafe.Slice((*float32)(unsafe.Pointer(data)), n),
	}))
}

// Close frees the context. It is nil-safe and idempotent.
func (c *Context) Close() error {
	if c == nil {
		return nil
	}
	if c.p != nil {
		C.llama_free(c.p)
		c.p = nil
	}
	if c.hook != nil {
		C.mka_hook_free(c.hook)
		c.hook = nil
		c.handle.Delete()
	}
	return nil
}

// NCtx returns the context size in tokens.
func (c *Context) NCtx() int { return int(C.llama_n_ctx(c.p)) }

// NBatch returns the largest batch Decode accepts.
func (c *Context) NBatch() int { return int(C.llama_n_batch(c.p)) }

// NSeqMax returns the number of sequences a batch may hold.
func (c *Context) NSeqMax() int { return int(C.llama_n_seq_max(c.p)) }

// Decode evaluates a batch. A capture hook, if any, runs during the call.
func (c *Context) Decode(b *Batch) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if b.Len() == 0 {
		return nil
	}
	r := C.llama_decode(c.p, b.c)
	switch {
	case r == 0:
		return nil
	case r == 1:
		return fmt.Errorf("%w: no room in the KV cache for %d tokens (n_ctx %d)", ErrDecode, b.Len(), c.NCtx())
	case r == 2:
		return fmt.Errorf("%w: aborted (the capture hook returned false or could not read a tensor)", ErrDecode)
	default:
		return fmt.Errorf("%w: status %d", ErrDecode, int(r))
	}
}

// Logits returns the logits of the i-th batch token of the last Decode
// (that token must have asked for output). The slice aliases llama.cpp's
// buffer and is valid until the next Decode or Close.
func (c *Context) Logits(i int) []float32 {
	p := C.llama_get_logits_ith(c.p, C.int32_t(i))
	if p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), c.nvocab)
}

// ClearMemory empties the KV cache (all sequences).
func (c *Context) ClearMemory() {
	C.llama_memory_clear(C.llama_get_memory(c.p), C.bool(true))
}

// RemoveSeq removes every cached token of sequence seq.
func (c *Context) RemoveSeq(seq int) {
	C.llama_memory_seq_rm(C.llama_get_memory(c.p), C.llama_seq_id(seq), -1, -1)
}
