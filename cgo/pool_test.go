package cgo

import (
	"slices"
	"sync"
	"testing"
)

// TestSharedPool checks the process's shared thread pool (pool.c): a Gram
// computed inside a decode's capture hook, between two of the decode's
// graphs on the same pool, equals one computed outside and leaves the
// decode's logits as they are; and decodes from two goroutines at once,
// which the pool's lock takes one at a time, give the logits of a decode
// alone.
func TestSharedPool(t *testing.T) {
	m, toks := storyModel(t, ModelParams{})
	n, d := len(toks), m.NEmbd()
	g, err := NewGram(2)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	logitsOf := func(ctx *Context) []float32 { return allLogits(ctx, n) }
	plain, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	decodeAll(t, plain, toks)
	want := logitsOf(plain)

	var rows []float32
	inside := [2][]float32{make([]float32, d*d), make([]float32, d*d)}
	var hookErr error
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, Capture: func(tn Tensor) bool {
		if tn.Kind == BlockOutput && tn.Layer == 5 {
			rows = slices.Clone(tn.Data)
			hookErr = g.Compute(tn.Data, tn.Data, n, d, inside[0], inside[1])
		}
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks)
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if !slices.Equal(logitsOf(ctx), want) {
		t.Error("a Gram inside the hook changed the decode's logits")
	}
	outside := [2][]float32{make([]float32, d*d), make([]float32, d*d)}
	if err := g.Compute(rows, rows, n, d, outside[0], outside[1]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inside[0], outside[0]) || !slices.Equal(inside[1], outside[1]) {
		t.Error("the Gram inside the hook differs from the same Gram outside")
	}

	var wg sync.WaitGroup
	errs := make([]string, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2})
			if err != nil {
				errs[w] = err.Error()
				return
			}
			defer c.Close()
			b := NewBatch(n)
			defer b.Close()
			for range 5 {
				b.Clear()
				for i, tok := range toks {
					b.Add(tok, i, 0, true)
				}
				c.ClearMemory()
				if err := c.Decode(b); err != nil {
					errs[w] = err.Error()
					return
				}
				if !slices.Equal(logitsOf(c), want) {
					errs[w] = "logits differ from a decode alone"
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, e := range errs {
		if e != "" {
			t.Errorf("goroutine %d: %s", w, e)
		}
	}
}
