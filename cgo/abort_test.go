package cgo

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// abortModel is a generated model (8 blocks, embd 256) whose decode of a
// 512-token batch takes about a second on two cores, in graph nodes of
// under a thirtieth of that, so that an abort in the middle can be told
// from one at the end.
func abortModel(t *testing.T) *Model {
	cfg := synth.Tiny()
	cfg.Blocks, cfg.Embd, cfg.FFN, cfg.Heads, cfg.KVHeads, cfg.Vocab, cfg.Ctx = 8, 256, 688, 8, 4, 4096, 512
	return synthModel(t, cfg)
}

// fill puts n tokens of sequence 0 into b, only the last one an output.
func fill(b *Batch, n, vocab int) {
	b.Clear()
	for i := range n {
		b.Add(int32(3+i*7%(vocab-3)), i, 0, i == n-1)
	}
}

// TestDecodeAbort cancels a decode in the middle and checks that it stops
// long before a whole decode would have ended, returns context.Canceled,
// and leaves the context usable: a later decode gives the same logits as
// before the abort. A context already done makes Decode return at once.
func TestDecodeAbort(t *testing.T) {
	m := abortModel(t)
	const n = 512
	ctx, err := NewContext(m, ContextParams{NCtx: n, NBatch: n, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	small := NewBatch(16)
	defer small.Close()
	fill(small, 16, m.NVocab())
	if err := ctx.Decode(small); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ctx.Logits(15))

	b := NewBatch(n)
	defer b.Close()
	fill(b, n, m.NVocab())
	ctx.ClearMemory()
	start := time.Now()
	if err := ctx.Decode(b); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	t.Logf("a whole decode of %d tokens: %v", n, full)

	for _, mode := range []string{"cancel", "deadline"} {
		ctx.ClearMemory()
		var cctx context.Context
		at := make(chan time.Time, 1) // when the context is done
		switch mode {
		case "cancel":
			c, cancel := context.WithCancel(context.Background())
			cctx = c
			time.AfterFunc(full/10, func() { at <- time.Now(); cancel() })
		case "deadline":
			c, cancel := context.WithTimeout(context.Background(), full/10)
			defer cancel()
			cctx = c
			at <- time.Now().Add(full / 10)
		}
		ctx.SetAbort(cctx)
		start = time.Now()
		err := ctx.Decode(b)
		stopped := time.Now()
		cancelled := <-at
		wantErr := map[string]error{"cancel": context.Canceled, "deadline": context.DeadlineExceeded}[mode]
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: Decode = %v, want %v", mode, err, wantErr)
		}
		// An abort only at the end of the decode would take 0.9 × full.
		if lag := stopped.Sub(cancelled); lag > full/2 {
			t.Fatalf("%s: Decode returned %v after the cancel (a whole decode takes %v)", mode, lag, full)
		}
		t.Logf("%s: stopped %v after the cancel, %v after the start", mode, stopped.Sub(cancelled), stopped.Sub(start))
		// Done stays done: the next Decode returns at once.
		if err := ctx.Decode(small); !errors.Is(err, wantErr) {
			t.Fatalf("%s: Decode after the abort = %v, want %v", mode, err, wantErr)
		}
		// Turned off, the context works as before.
		ctx.SetAbort(nil)
		ctx.ClearMemory()
		if err := ctx.Decode(small); err != nil {
			t.Fatalf("%s: Decode after SetAbort(nil): %v", mode, err)
		}
		got := ctx.Logits(15)
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%s: logit %d after the abort %v, before %v", mode, i, got[i], want[i])
			}
		}
	}

	// A live context does not stop a decode.
	live, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx.SetAbort(live)
	ctx.ClearMemory()
	if err := ctx.Decode(small); err != nil {
		t.Fatalf("Decode with a live abort context: %v", err)
	}
}

// TestAbortCleanup sets and cancels abort contexts many times, also racing
// a cancel against Close, and checks that no goroutine is left behind.
func TestAbortCleanup(t *testing.T) {
	cfg := synth.Tiny()
	cfg.Blocks = 2
	m := synthModel(t, cfg)
	b := NewBatch(8)
	defer b.Close()
	fill(b, 8, m.NVocab())
	before := runtime.NumGoroutine()
	for i := range 50 {
		ctx, err := NewContext(m, ContextParams{NCtx: 64, NBatch: 8, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithCancel(context.Background())
		ctx.SetAbort(c)
		ctx.SetAbort(c) // replacing the context releases the first one
		if i%2 == 0 {
			cancel()
			if err := ctx.Decode(b); !errors.Is(err, context.Canceled) {
				t.Fatalf("Decode = %v, want context.Canceled", err)
			}
		} else {
			go cancel() // races with Close
		}
		ctx.Close()
		ctx.Close()
		cancel()
	}
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Fatalf("%d goroutines before, %d after 50 contexts with an abort", before, after)
	}
}
