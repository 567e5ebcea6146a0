package cgo

/*
#include "llama.h"
#include "safe.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// NCtx returns the context size in tokens.
func (c *Context) NCtx() int { return int(C.llama_n_ctx(c.p)) }

// NBatch returns the largest batch Decode accepts.
func (c *Context) NBatch() int { return int(C.llama_n_batch(c.p)) }

// NSeqMax returns the number of sequences a batch may hold.
func (c *Context) NSeqMax() int { return int(C.llama_n_seq_max(c.p)) }

// Decode evaluates a batch. A capture hook, if any, runs during the call.
// Once the context given to SetAbort is done, Decode stops (also in the
// middle of the batch) and returns that context's error.
func (c *Context) Decode(b *Batch) error {
	if c == nil || c.p == nil {
		return ErrClosed
	}
	if err := c.abort.err(); err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	c.useThreads()
	var exc C.mka_exc
	r := C.mka_decode(c.p, b.c, &exc)
	return c.decodeStatus(b, r, &exc)
}

// decodeStatus turns llama_decode's status (and a C++ exception) into an
// error.
func (c *Context) decodeStatus(b *Batch, r C.int32_t, exc *C.mka_exc) error {
	if err := caught("llama_decode", exc); err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	switch {
	case r == 0:
		return nil
	case r == 1:
		return fmt.Errorf("%w: no room in the KV cache for %d tokens (n_ctx %d)", ErrDecode, b.Len(), c.NCtx())
	case r == 2 && c.abort.err() != nil:
		return c.abort.err()
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
