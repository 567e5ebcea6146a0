package cgo

/*
#include <stdlib.h>
#include "llama.h"
#include "resume.h"

static void mka_batch_set_embd(struct llama_batch *b, int i, const float *row, int n_embd, llama_pos pos, llama_seq_id seq, int8_t out) {
	for (int k = 0; k < n_embd; k++) {
		b->embd[(size_t)i * n_embd + k] = row[k];
	}
	b->pos[i] = pos;
	b->n_seq_id[i] = 1;
	b->seq_id[i][0] = seq;
	b->logits[i] = out;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// A resumed decode runs a model from the middle: blocks first, first+1,
// …, n−1 and the output layer, on the residual stream entering block
// first (the output of block first−1, as a capture hook sees it) instead
// of tokens. With the blocks before first unchanged since that stream was
// captured, its logits are those of a whole decode of the same tokens,
// at the cost of n − first blocks: the merge search scores candidates
// that change only deep blocks this way. More generally a decode can run
// any list of blocks (DecodeLayers): the search also leaves out the blocks
// it has made identities.

// ErrNoResume means the model's graph cannot start in the middle.
var ErrNoResume = errors.New("decodes of some blocks are not exact for this graph")

// CanResume returns nil when Context.DecodeFrom and DecodeLayers, on
// token and on embedding batches, work for m, or an error that says why
// not (the caller then decodes the whole model).
func (m *Model) CanResume() error { return m.resumeCheck(true) }

// CanDecodeLayers returns nil when Context.DecodeLayers works for m on
// token batches (its graph may still scale embedding batches again:
// CanResume), or an error that says why not.
func (m *Model) CanDecodeLayers() error { return m.resumeCheck(false) }

func (m *Model) resumeCheck(embd bool) error {
	if m == nil || m.p == nil {
		return ErrClosed
	}
	switch C.mka_resume_check(m.p, C.bool(embd)) {
	case 0:
		return nil
	case 1:
		arch, _ := m.Meta("general.architecture")
		return fmt.Errorf("%s: %w (architecture %s)", m.path, ErrNoResume, arch)
	default:
		return fmt.Errorf("%s: %w (it scales embedding batches again)", m.path, ErrNoResume)
	}
}

// NewEmbdBatch allocates a batch of up to capacity rows of nEmbd floats
// (embeddings instead of tokens), for DecodeFrom. Close frees it.
func NewEmbdBatch(capacity, nEmbd int) *Batch {
	Init()
	return &Batch{c: C.llama_batch_init(C.int32_t(capacity), C.int32_t(nEmbd), 1), cap: capacity, embd: nEmbd}
}

// AddEmbd appends an embedding row at position pos of sequence seq;
// output asks for its logits. It panics when the batch is full, is not an
// embedding batch or row has the wrong length (programmer errors).
func (b *Batch) AddEmbd(row []float32, pos, seq int, output bool) {
	i := int(b.c.n_tokens)
	switch {
	case i >= b.cap:
		panic("cgo: batch is full")
	case b.embd == 0 || len(row) != b.embd:
		panic(fmt.Sprintf("cgo: AddEmbd: a row of %d floats for a batch of %d", len(row), b.embd))
	}
	var o C.int8_t
	if output {
		o = 1
	}
	C.mka_batch_set_embd(&b.c, C.int(i), (*C.float)(unsafe.Pointer(&row[0])), C.int(b.embd), C.llama_pos(pos), C.llama_seq_id(seq), o)
	b.c.n_tokens++
}

// DecodeFrom evaluates an embedding batch (NewEmbdBatch) from block first
// on: b's rows are the residual stream entering block first, and the
// blocks before it are not run. Logits and a capture hook then see what a
// Decode of the whole model would see from block first on, with the same
// block numbers (StopAfter's too). It is DecodeLayers with blocks first,
// first+1, …, n−1. first = 0 is a Decode of embeddings.
func (c *Context) DecodeFrom(b *Batch, first int) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if b.embd != c.model.NEmbd() {
		return fmt.Errorf("cgo: DecodeFrom needs an embedding batch of %d floats per row", c.model.NEmbd())
	}
	if first < 0 || first >= c.model.NLayer() {
		return fmt.Errorf("cgo: DecodeFrom: block %d of %d", first, c.model.NLayer())
	}
	ids := make([]int, c.model.NLayer()-first)
	for i := range ids {
		ids[i] = first + i
	}
	return c.DecodeLayers(b, ids)
}

// DecodeLayers evaluates b through the loaded blocks ids only, in that
// order, and then the output layer: b holds tokens (NewBatch) or the
// residual stream entering block ids[0] (NewEmbdBatch). A capture hook
// sees each block under its loaded number, and StopAfter counts in loaded
// blocks too. The result is that of the whole model when every block left
// out before ids[0] was already applied to b's input and every other one
// left out adds nothing to the stream (a block whose output tensors are
// zero), with the same kernels on the same data, and every block keeps its
// place in what the graph derives from the block index (sliding window,
// NoPE: a run of removed blocks as long as the pattern's period). The
// context must be Resumable and the model CanDecodeLayers (CanResume for
// an embedding batch); DecodeLayers reorders the model's
// block list for the length of the call, so no other context may decode
// the same model meanwhile.
func (c *Context) DecodeLayers(b *Batch, ids []int) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if !c.resumable {
		return errors.New("cgo: DecodeLayers needs a context made with ContextParams.Resumable")
	}
	if b.embd != 0 && b.embd != c.model.NEmbd() {
		return fmt.Errorf("cgo: DecodeLayers needs an embedding batch of %d floats per row", c.model.NEmbd())
	}
	n := c.model.NLayer()
	if len(ids) == 0 || len(ids) > n {
		return fmt.Errorf("cgo: DecodeLayers: %d blocks of %d", len(ids), n)
	}
	if err := c.model.resumeCheck(b.embd != 0); err != nil {
		return err
	}
	if err := c.abort.err(); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	if c.ids == nil {
		c.ids = (*C.int32_t)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.int32_t(0)))))
	}
	cids := unsafe.Slice(c.ids, n)
	for i, id := range ids {
		cids[i] = C.int32_t(id)
	}
	c.useThreads()
	var exc C.mka_exc
	// The graph numbers its blocks 0, 1, …: the hook names them by ids.
	c.setLayerMap(c.ids, len(ids))
	defer c.setLayerMap(nil, 0)
	r := C.mka_decode_layers(c.p, c.model.p, b.c, c.ids, C.int(len(ids)), &exc)
	switch r {
	case -3:
		return fmt.Errorf("cgo: DecodeLayers: blocks %v are not distinct blocks of %d", ids, n)
	case -4:
		return fmt.Errorf("cgo: DecodeLayers: blocks %v would move in the graph's index-derived pattern (sliding window, NoPE)", ids)
	}
	return c.decodeStatus(b, r, &exc)
}

// setEnv sets an environment variable (seen by C's getenv) and returns
// the function that puts back its earlier value.
func setEnv(key, value string) (restore func()) {
	old, had := os.LookupEnv(key)
	os.Setenv(key, value)
	return func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	}
}
