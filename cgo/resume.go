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
// that change only deep blocks this way.

// ErrNoResume means the model's graph cannot start in the middle.
var ErrNoResume = errors.New("resumed decodes need a llama, qwen2 or qwen3 graph without an embedding scale")

// CanResume returns nil when Context.DecodeFrom works for m, or an
// error that says why not (the caller then decodes the whole model).
func (m *Model) CanResume() error {
	if m == nil || m.p == nil {
		return ErrClosed
	}
	switch C.mka_resume_check(m.p) {
	case 0:
		return nil
	case 1:
		arch, _ := m.Meta("general.architecture")
		return fmt.Errorf("%s: %w (architecture %s)", m.path, ErrNoResume, arch)
	default:
		return fmt.Errorf("%s: %w (it scales embeddings)", m.path, ErrNoResume)
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
// block numbers (StopAfter's too). The context must be
// Resumable and the model CanResume; DecodeFrom turns the model's first
// blocks out of llama.cpp's block list for the length of the call, so no
// other context may decode the same model meanwhile. first = 0 is a
// Decode of embeddings.
func (c *Context) DecodeFrom(b *Batch, first int) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if !c.resumable {
		return errors.New("cgo: DecodeFrom needs a context made with ContextParams.Resumable")
	}
	if b.embd != c.model.NEmbd() {
		return fmt.Errorf("cgo: DecodeFrom needs an embedding batch of %d floats per row", c.model.NEmbd())
	}
	if first < 0 || first >= c.model.NLayer() {
		return fmt.Errorf("cgo: DecodeFrom: block %d of %d", first, c.model.NLayer())
	}
	if err := c.model.CanResume(); err != nil {
		return err
	}
	if err := c.abort.err(); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	var exc C.mka_exc
	// The graph numbers its blocks from 0.
	c.setLayerOffset(first)
	defer c.setLayerOffset(0)
	r := C.mka_decode_from(c.p, c.model.p, b.c, C.int(first), &exc)
	if r == -3 {
		return fmt.Errorf("cgo: DecodeFrom: block %d out of range", first)
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
