package cgo

/*
#include <stdlib.h>
#include "llama.h"

// mka_abort is the flag llama.cpp's abort callback reads: ggml's CPU
// backend calls it after every graph node and stops the graph when it
// returns true (llama_decode then returns 2).
typedef struct { int flag; } mka_abort;

static bool mka_abort_cb(void *data) {
	return __atomic_load_n(&((mka_abort *)data)->flag, __ATOMIC_RELAXED) != 0;
}

static void mka_abort_install(struct llama_context *c, mka_abort *a) {
	llama_set_abort_callback(c, mka_abort_cb, a);
}

static void mka_abort_set(mka_abort *a, int v) {
	__atomic_store_n(&a->flag, v, __ATOMIC_RELAXED);
}
*/
import "C"

import (
	"context"
	"unsafe"
)

// aborter connects a Go context to a Context's abort flag.
type aborter struct {
	flag  *C.mka_abort    // C memory: llama.cpp keeps the pointer
	ctx   context.Context // nil: no abort
	stop  func() bool     // unregisters the context.AfterFunc
	fired chan struct{}   // closed when the AfterFunc has set the flag
}

// SetAbort makes Decode stop once ctx is done, also in the middle of a
// decode: llama.cpp's abort callback reads a flag that ctx's cancellation
// sets, and ggml's CPU backend checks it after every graph node, so a
// decode stops within one node's time (milliseconds for the models here; a
// GPU backend has no such check and finishes its part of the graph first).
// Decode then returns ctx.Err(), and the context stays usable: the aborted
// batch's tokens are removed from the KV cache and a later Decode, after
// SetAbort with a live context or nil, works. A nil ctx, or one that is
// never done, turns the abort off. SetAbort must not be called during a
// Decode; Close releases what it set up.
func (c *Context) SetAbort(ctx context.Context) {
	if c == nil || c.p == nil {
		return
	}
	c.abort.release()
	if c.abort.flag != nil {
		C.mka_abort_set(c.abort.flag, 0)
	}
	if ctx == nil || ctx.Done() == nil {
		return
	}
	if c.abort.flag == nil {
		c.abort.flag = (*C.mka_abort)(C.calloc(1, C.size_t(unsafe.Sizeof(C.mka_abort{}))))
		C.mka_abort_install(c.p, c.abort.flag)
	}
	flag, fired := c.abort.flag, make(chan struct{})
	c.abort.ctx, c.abort.fired = ctx, fired
	c.abort.stop = context.AfterFunc(ctx, func() {
		C.mka_abort_set(flag, 1)
		close(fired)
	})
}

// err returns the abort context's error once it is done, else nil.
func (a *aborter) err() error {
	if a.ctx == nil {
		return nil
	}
	return a.ctx.Err()
}

// release unregisters the abort context, waiting for its AfterFunc when it
// is already running, so that the flag may be freed or reused.
func (a *aborter) release() {
	if a.stop != nil && !a.stop() {
		<-a.fired
	}
	a.ctx, a.stop, a.fired = nil, nil, nil
}

// free releases the abort context and the flag; call it after llama_free.
func (a *aborter) free() {
	a.release()
	if a.flag != nil {
		C.free(unsafe.Pointer(a.flag))
		a.flag = nil
	}
}
