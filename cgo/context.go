package cgo

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include "safe.h"
#include "pool.h"

extern _Bool mkaGoTensor(uintptr_t handle, int layer, int kind, float *data, int64_t ne0, int64_t rows);
extern _Bool mkaGoMatMul(uintptr_t handle, char *weight, float *data, int64_t ne0, int64_t rows);

typedef struct {
	uintptr_t handle;    // CaptureFunc, 0 when block outputs are not captured
	int want_inp;
	int want_ffn_inp;  // also capture the FFN's input stream (f_name) or contribution (x_name) of every block
	char inp_name[32]; // the block-0 input's graph name ("inp_embd")
	char f_name[32];   // prefix of the residual stream before block i's FFN ("ffn_inp-"), "" when unnamed
	char x_name[32];   // prefix of the FFN's contribution to the stream ("ffn_out-" for phi3), "" when not captured
	uintptr_t mm_handle; // MatMulFunc, 0 when matmul inputs are not captured
	char mm_only[128];   // when not empty, only the multiplications by this weight
	void *scratch;     // device-to-host copies and type conversions
	size_t scratch_size;
	int stop_layer;    // stop the graph after capturing this block (-2: never)
	const int32_t *layer_map; // graph block i is loaded block layer_map[i] (a decode of some blocks), when n_map > 0
	int n_map;
} mka_hook;

// mka_indexed returns i when name is prefix followed by a block index i,
// else -2.
static int mka_indexed(const char *name, const char *prefix) {
	const size_t n = strlen(prefix);
	if (n == 0 || strncmp(name, prefix, n) != 0 || name[n] < '0' || name[n] > '9') {
		return -2;
	}
	return atoi(name + n);
}

// mka_layer_of returns the block index of an "l_out-<i>" tensor (kind 0)
// or, when wanted, of the FFN's input stream f_name<i> (kind 1) or
// contribution x_name<i> (kind 2), -1 for the block-0 input inp_name (when
// wanted) and -2 for anything else.
static int mka_layer_of(const mka_hook *h, const char *name, int *kind) {
	int i;
	*kind = 0;
	if ((i = mka_indexed(name, "l_out-")) >= 0) {
		return i;
	}
	if (h->want_ffn_inp && (i = mka_indexed(name, h->f_name)) >= 0) {
		*kind = 1;
		return i;
	}
	if (h->want_ffn_inp && (i = mka_indexed(name, h->x_name)) >= 0) {
		*kind = 2;
		return i;
	}
	if (h->want_inp && strcmp(name, h->inp_name) == 0) {
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

// mka_mm_wanted reports whether t is a dense matrix multiplication by a
// model weight (src[0] named "*.weight").
static bool mka_mm_wanted(const struct ggml_tensor *t) {
	if (t->op != GGML_OP_MUL_MAT || t->src[0] == NULL || t->src[1] == NULL) {
		return false;
	}
	const char *n = t->src[0]->name;
	const size_t l = strlen(n);
	return l > 7 && strcmp(n + l - 7, ".weight") == 0;
}

// mka_rows_f32 returns the rows of t (ne0 floats each, ggml_nrows(t) of
// them, dense) as float32: t's own memory when it is a contiguous float32
// host tensor, otherwise a copy in the hook's scratch buffer (device
// tensors through ggml_backend_tensor_get, strided rows gathered, other
// types converted with ggml's to_float). NULL when that is not possible.
static float *mka_rows_f32(mka_hook *h, struct ggml_tensor *t) {
	const int64_t ne0 = t->ne[0];
	const int64_t rows = ggml_nrows(t);
	const int64_t n = ne0 * rows;
	const bool host = t->buffer == NULL || ggml_backend_buffer_is_host(t->buffer);
	const bool dense = ggml_is_contiguous(t);
	if (host && dense && t->type == GGML_TYPE_F32) {
		return (float *)t->data;
	}
	// Rows must be dense even when the rows themselves are strided.
	if (!dense && (ggml_blck_size(t->type) != 1 || t->nb[0] != ggml_type_size(t->type))) {
		return NULL;
	}
	const size_t rb = ggml_row_size(t->type, ne0);
	const size_t nb = rb * (size_t)rows;
	const size_t need = nb + (t->type == GGML_TYPE_F32 ? 0 : (size_t)n * sizeof(float));
	char *buf = (char *)mka_scratch(h, need);
	if (buf == NULL) {
		return NULL;
	}
	if (dense) {
		if (host) {
			memcpy(buf, t->data, nb);
		} else {
			ggml_backend_tensor_get(t, buf, 0, nb);
		}
	} else {
		char *p = buf;
		for (int64_t i3 = 0; i3 < t->ne[3]; i3++) {
			for (int64_t i2 = 0; i2 < t->ne[2]; i2++) {
				for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
					const size_t off = i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
					if (host) {
						memcpy(p, (const char *)t->data + off, rb);
					} else {
						ggml_backend_tensor_get(t, p, off, rb);
					}
					p += rb;
				}
			}
		}
	}
	if (t->type == GGML_TYPE_F32) {
		return (float *)buf;
	}
	const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
	if (tr->to_float == NULL) {
		return NULL;
	}
	float *data = (float *)(buf + nb);
	tr->to_float(buf, data, n);
	return data;
}

// mka_mm hands the activations of a weight multiplication (src[1], as
// float32 rows of ne0) and the weight's name to Go.
static bool mka_mm(mka_hook *h, struct ggml_tensor *t) {
	struct ggml_tensor *s = t->src[1];
	float *data = mka_rows_f32(h, s);
	return data != NULL && mkaGoMatMul(h->mm_handle, t->src[0]->name, data, s->ne[0], ggml_nrows(s));
}

static bool mka_cb_eval(struct ggml_tensor *t, bool ask, void *ud) {
	mka_hook *h = (mka_hook *)ud;
	// A product may be a named block tensor too (phi3's ffn_out-<i> is
	// ffn_down's product): then both hooks see it.
	const bool mm = h->mm_handle != 0 && mka_mm_wanted(t) && (h->mm_only[0] == 0 || strcmp(t->src[0]->name, h->mm_only) == 0);
	int kind = 0;
	int layer = h->handle != 0 ? mka_layer_of(h, t->name, &kind) : -2;
	if (ask) {
		return mm || layer >= -1;
	}
	if (mm && !mka_mm(h, t)) {
		return false;
	}
	if (layer < -1) {
		return true;
	}
	if (layer >= 0 && h->n_map > 0) {
		if (layer >= h->n_map) {
			return true; // (not a block of the decode: cannot happen)
		}
		layer = h->layer_map[layer];
	}
	float *data = mka_rows_f32(h, t);
	if (data == NULL) {
		return false;
	}
	// Returning false after the last block stops the graph there: the
	// output norm and the logits are not computed.
	return mkaGoTensor(h->handle, layer, kind, data, t->ne[0], ggml_nrows(t)) && !(kind == 0 && layer == h->stop_layer);
}

static void mka_set_hook(struct llama_context_params *p, mka_hook *h) {
	p->cb_eval = mka_cb_eval;
	p->cb_eval_user_data = h;
}

static void mka_hook_stop_after(mka_hook *h, int layer) { h->stop_layer = layer; }

static void mka_hook_names(mka_hook *h, const char *inp, const char *f, const char *x) {
	snprintf(h->inp_name, sizeof h->inp_name, "%s", inp);
	snprintf(h->f_name, sizeof h->f_name, "%s", f);
	snprintf(h->x_name, sizeof h->x_name, "%s", x);
}

static void mka_hook_mm_only(mka_hook *h, const char *n) { snprintf(h->mm_only, sizeof h->mm_only, "%s", n); }
static void mka_hook_map(mka_hook *h, const int32_t *map, int n) { h->layer_map = map, h->n_map = n; }

static void mka_hook_free(mka_hook *h) {
	if (h) {
		free(h->scratch);
		free(h);
	}
}
*/
import "C"

import (
	"errors"
	"fmt"
	rcgo "runtime/cgo"
	"unsafe"
)

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
	// CaptureFFNInput also captures every block's residual stream before
	// its FFN ("ffn_inp-<i>"), handed to Capture before that block's
	// output with Kind FFNInput, or, in a graph that leaves that stream
	// unnamed, the FFN's contribution to it (Kind FFNOutput), as
	// CaptureNames says.
	CaptureFFNInput bool
	// CaptureNames are the graph names the hook looks for; the zero value
	// is llama's.
	CaptureNames CaptureNames
	// SkipLogits stops every Decode once Capture has the last block's
	// output: the output norm and the logits, unused in calibration, are
	// not computed (a large-vocabulary model spends a fifth or more of its
	// compute there), and Logits returns meaningless values. It needs
	// Capture and excludes MatMulInputs (whose output.weight input would
	// be skipped).
	SkipLogits bool

	// MatMulInputs, when set, receives during Decode the input activations
	// of every dense matrix multiplication by a model weight (GGML_OP_MUL_MAT
	// whose first operand is named "*.weight"), as llama.cpp's imatrix tool
	// sees them. It works alongside Capture.
	MatMulInputs MatMulFunc

	// Resumable lets the context DecodeFrom: llama.cpp's graph reuse is
	// turned off for it (a resumed decode runs another graph on an input
	// of the same shape), so every Decode builds its graph anew.
	Resumable bool

	// PerSeqKV gives each of the NSeqMax sequences a KV cache of its own,
	// NCtx/NSeqMax cells (llama.cpp's kv_unified off; otherwise one cache
	// for all), so that a token's attention runs over its own sequence's
	// cells only. A batch must then hold each sequence's tokens together,
	// sequences in increasing order, no token in two of them; llama.cpp
	// takes the sequences one after the other into a ubatch, so captured
	// rows still come in batch order. With flash attention the logits are
	// the same bits as with one cache.
	PerSeqKV bool
	// FlashAttention leaves attention to llama.cpp's default, flash
	// attention ("auto": on wherever the device supports it). Without it,
	// every context computes attention as softmax(K·Q)·V with separate
	// matrix products (llama.cpp's -fa off): the pinned ggml's CPU flash
	// attention walks one query and one cached token at a time and sums
	// softmax·V in half precision, so for windows of a few hundred tokens
	// the products are several times faster on the CPU and sum in float32;
	// the two differ by a few 1e-4 of the values.
	FlashAttention bool
}

// Context is a llama.cpp inference context.
type Context struct {
	p      *C.struct_llama_context
	model  *Model
	hook   *C.mka_hook
	handle rcgo.Handle
	mmh    rcgo.Handle
	nvocab int
	err    error
	abort  aborter // SetAbort
	// resumable: created with ContextParams.Resumable (DecodeLayers).
	resumable bool
	ids       *C.int32_t // DecodeLayers' blocks, C memory (the hook reads them)
	// threads were asked for, curThreads are in use (useThreads).
	threads, curThreads int
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
	// One KV stream for all sequences unless PerSeqKV: llama.cpp then
	// splits a batch into ubatches in batch order (split_simple), so
	// captured rows line up with the tokens as they were added, also when
	// a token is in several sequences.
	p.kv_unified = C.bool(!cp.PerSeqKV)
	if !cp.FlashAttention {
		p.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	}
	c := &Context{model: m, nvocab: m.NVocab(), resumable: cp.Resumable}
	if cp.Capture != nil || cp.MatMulInputs != nil {
		c.hook = (*C.mka_hook)(C.calloc(1, C.size_t(unsafe.Sizeof(C.mka_hook{}))))
		if cp.Capture != nil {
			c.handle = rcgo.NewHandle(cp.Capture)
			c.hook.handle = C.uintptr_t(c.handle)
			if cp.CaptureInput {
				c.hook.want_inp = 1
			}
			if cp.CaptureFFNInput {
				c.hook.want_ffn_inp = 1
			}
			if err := cp.CaptureNames.set(c.hook); err != nil {
				c.Close()
				return nil, fmt.Errorf("%s: %w", m.path, err)
			}
		}
		c.hook.stop_layer = -2
		if cp.SkipLogits && cp.MatMulInputs == nil {
			c.hook.stop_layer = C.int(m.NLayer() - 1)
		}
		if cp.MatMulInputs != nil {
			c.mmh = rcgo.NewHandle(cp.MatMulInputs)
			c.hook.mm_handle = C.uintptr_t(c.mmh)
		}
		C.mka_set_hook(&p, c.hook)
	}
	clearErrors()
	var exc C.mka_exc
	if cp.Resumable {
		// llama.cpp reads it once, in the context's constructor.
		restore := setEnv("LLAMA_GRAPH_REUSE_DISABLE", "1")
		c.p = C.mka_init_from_model(m.p, p, &exc)
		restore()
	} else {
		c.p = C.mka_init_from_model(m.p, p, &exc)
	}
	if err := caught("llama_init_from_model", &exc); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w (%w)", m.path, ErrContext, err)
	}
	if c.p == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w (n_ctx %d, n_batch %d; %s)", m.path, ErrContext, int(p.n_ctx), int(p.n_batch), llamaReason())
	}
	// A persistent thread pool: without one ggml starts and joins its
	// worker threads on every graph computation, and a capture hook splits
	// each decode into one computation per captured block. It is the
	// process's pool of that many threads (pool.c), on which the products
	// a hook computes run too.
	if pool := C.mka_pool(p.n_threads_batch); pool != nil {
		C.llama_attach_threadpool(c.p, pool, pool)
	}
	c.threads, c.curThreads = int(p.n_threads_batch), int(p.n_threads_batch)
	return c, nil
}

// set gives the hook the names (each shorter than 32 bytes).
func (n CaptureNames) set(h *C.mka_hook) error {
	in, f, x := n.names()
	for _, s := range []string{in, f, x} {
		if len(s) >= 32 {
			return fmt.Errorf("capture name %q is too long", s)
		}
	}
	cin, cf, cx := C.CString(in), C.CString(f), C.CString(x)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cf))
	defer C.free(unsafe.Pointer(cx))
	C.mka_hook_names(h, cin, cf, cx)
	return nil
}

//export mkaGoTensor
func mkaGoTensor(handle C.uintptr_t, layer, kind C.int, data *C.float, ne0, rows C.int64_t) C.bool {
	f := rcgo.Handle(handle).Value().(CaptureFunc)
	n := int(ne0) * int(rows)
	return C.bool(f(Tensor{
		Layer: int(layer),
		Kind:  TensorKind(kind),
		Rows:  int(rows),
		Cols:  int(ne0),
		Data:  unsafe.Slice((*float32)(unsafe.Pointer(data)), n),
	}))
}

//export mkaGoMatMul
func mkaGoMatMul(handle C.uintptr_t, weight *C.char, data *C.float, ne0, rows C.int64_t) C.bool {
	f := rcgo.Handle(handle).Value().(MatMulFunc)
	n := int(ne0) * int(rows)
	return C.bool(f(C.GoString(weight), int(ne0), int(rows),
		unsafe.Slice((*float32)(unsafe.Pointer(data)), n)))
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
	C.free(unsafe.Pointer(c.ids))
	c.ids = nil
	c.abort.free()
	if c.hook != nil {
		C.mka_hook_free(c.hook)
		c.hook = nil
		if c.handle != 0 {
			c.handle.Delete()
			c.handle = 0
		}
		if c.mmh != 0 {
			c.mmh.Delete()
			c.mmh = 0
		}
	}
	return nil
}

// StopAfter makes every later Decode stop the graph once the capture hook
// has block layer's output (layer < 0: run the whole graph, or up to the
// last block with ContextParams.SkipLogits). Blocks after it, the output
// norm and the logits are not computed, so Logits returns meaningless
// values. It needs a Capture hook.
func (c *Context) StopAfter(layer int) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if c.hook == nil || c.handle == 0 {
		return errors.New("StopAfter needs a capture hook")
	}
	if layer < 0 {
		layer = -2
	}
	C.mka_hook_stop_after(c.hook, C.int(layer))
	return nil
}

// MatMulOnly makes the MatMulInputs hook see only the multiplications by
// the weight named weight ("": every weight). Each multiplication the hook
// sees splits the graph there, so a caller that wants one weight's inputs
// saves the others' splits.
func (c *Context) MatMulOnly(weight string) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if c.hook == nil || c.mmh == 0 {
		return errors.New("MatMulOnly needs a MatMulInputs hook")
	}
	if len(weight) >= 128 {
		return fmt.Errorf("MatMulOnly: weight name %q is too long", weight)
	}
	cs := C.CString(weight)
	defer C.free(unsafe.Pointer(cs))
	C.mka_hook_mm_only(c.hook, cs)
	return nil
}

// setLayerMap makes the capture hook, if any, name graph block i by
// loaded block ids[i] (a decode of some blocks: DecodeLayers); n = 0 puts
// back the graph's own numbers.
func (c *Context) setLayerMap(ids *C.int32_t, n int) {
	if c.hook != nil {
		C.mka_hook_map(c.hook, ids, C.int(n))
	}
}
