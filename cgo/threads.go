package cgo

/*
#include "llama.h"
#include "pool.h"
*/
import "C"

import "sync/atomic"

// threadLimit is SetThreadLimit's function (nil: none).
var threadLimit atomic.Pointer[func(want int) int]

// SetThreadLimit makes every decode and every product on ggml's CPU
// device ask limit how many of its threads to use now (1 to want); nil
// removes it. ggml's workers spin at each of a graph's barriers, so a
// thread that waits for a core another process holds costs its partners
// their cores too: while other processes keep the cores busy, fewer
// threads finish sooner (cmd/mka-gguf/internal/cpuload).
func SetThreadLimit(limit func(want int) int) {
	if limit == nil {
		threadLimit.Store(nil)
		return
	}
	threadLimit.Store(&limit)
}

// limitThreads returns the threads to use of want.
func limitThreads(want int) int {
	f := threadLimit.Load()
	if f == nil || want <= 1 {
		return want
	}
	return min(want, max(1, (*f)(want)))
}

// useThreads sets the context's threads for the next decode (of the
// threads it was made with, as the limit allows): llama.cpp's thread count
// and the process's pool of that many threads (pool.c; switching pools
// pauses the other one's workers).
func (c *Context) useThreads() {
	n := limitThreads(c.threads)
	if n == c.curThreads || n < 1 {
		return
	}
	C.llama_set_n_threads(c.p, C.int32_t(n), C.int32_t(n))
	if pool := C.mka_pool(C.int(n)); pool != nil {
		C.llama_attach_threadpool(c.p, pool, pool)
	}
	c.curThreads = n
}

// useThreads sets the device's threads for the next compute, as
// Context.useThreads does.
func (g *cpuGraph) useThreads() {
	n := limitThreads(g.threads)
	if n == g.curThreads || n < 1 {
		return
	}
	C.mka_pool_use(g.be, C.int(n))
	g.curThreads = n
}
