package cgo

import (
	"slices"
	"sync/atomic"
	"testing"
)

// TestThreadLimit: a context asks SetThreadLimit's function before each
// decode, switches to the threads it allows (llama.cpp's count and the
// pool of that many) and back when it allows all again, and the logits do
// not depend on the threads. A Gram asks it before each compute.
func TestThreadLimit(t *testing.T) {
	m, toks := storyModel(t, ModelParams{})
	defer SetThreadLimit(nil)
	var asked atomic.Int32
	allow := 2
	SetThreadLimit(func(want int) int {
		if want == 2 {
			asked.Add(1)
		}
		return allow
	})
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decode := func() []float32 {
		ctx.ClearMemory()
		decodeAll(t, ctx, toks)
		return allLogits(ctx, len(toks))
	}
	two := decode()
	allow = 1
	one := decode()
	if ctx.curThreads != 1 {
		t.Fatalf("limit 1: the context uses %d threads", ctx.curThreads)
	}
	if !slices.Equal(one, two) {
		t.Fatal("logits with 1 thread differ from those with 2")
	}
	allow = 5
	if decode(); ctx.curThreads != 2 {
		t.Fatalf("limit 5 of 2 threads: the context uses %d", ctx.curThreads)
	}
	if asked.Load() < 3 {
		t.Fatalf("the limit was asked %d times for 3 decodes", asked.Load())
	}

	g, err := NewGram(2)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	const n, d = 32, 8
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	gram := [2][]float32{make([]float32, d*d), make([]float32, d*d)}
	if err := g.Compute(x, x, n, d, gram[0], gram[1]); err != nil {
		t.Fatal(err)
	}
	allow = 1
	again := [2][]float32{make([]float32, d*d), make([]float32, d*d)}
	if err := g.Compute(x, x, n, d, again[0], again[1]); err != nil {
		t.Fatal(err)
	}
	if g.g.curThreads != 1 || !slices.Equal(gram[0], again[0]) {
		t.Fatalf("Gram with limit 1: %d threads, same result %v", g.g.curThreads, slices.Equal(gram[0], again[0]))
	}
}
