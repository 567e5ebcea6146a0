package runner

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// TestOneProc checks that overlapping oneProc holds keep GOMAXPROCS at 1
// until the last is released and then restore the setting from before.
func TestOneProc(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			release := oneProc()
			if n := runtime.GOMAXPROCS(0); n != 1 {
				t.Errorf("GOMAXPROCS %d inside oneProc", n)
			}
			release()
		}()
	}
	close(start)
	wg.Wait()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("GOMAXPROCS %d after every release, want 3", n)
	}
	r1 := oneProc()
	r2 := oneProc()
	r1()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d with one hold left", n)
	}
	r2()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("GOMAXPROCS %d after nested release", n)
	}
}

// TestRunAbort cancels Run in the middle of its first decode (one decode of
// four 128-token chunks of a generated 8-block model) and checks that it
// returns context.Canceled long before the decode would have ended.
func TestRunAbort(t *testing.T) {
	cfg := synth.Tiny()
	cfg.Blocks, cfg.Embd, cfg.FFN, cfg.Heads, cfg.KVHeads, cfg.Vocab, cfg.Ctx = 8, 256, 688, 8, 4, 4096, 512
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := synth.Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := cgo.LoadModel(path, cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	chunks := make([][]int32, 4)
	for i := range chunks {
		for j := range 128 {
			chunks[i] = append(chunks[i], int32(3+(i*128+j)*7%4000))
		}
	}
	opt := Options{Threads: 2, BatchTokens: 512, Logits: true}
	st, err := Run(m, chunks, opt, nil)
	if err != nil || st.Decodes != 1 {
		t.Fatalf("Run: %v (%d decodes, want 1)", err, st.Decodes)
	}
	full := st.Elapsed
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opt.Ctx = ctx
	called := false
	opt.Before = func(int, int) { time.AfterFunc(full/10, cancel) }
	start := time.Now()
	st, err = Run(m, chunks, opt, func(*Decoded) error { called = true; return nil })
	took := time.Since(start)
	if !errors.Is(err, context.Canceled) || called || st.Decodes != 0 {
		t.Fatalf("cancelled Run: %v, %d decodes, callback called %v; want context.Canceled before any", err, st.Decodes, called)
	}
	if took > full*6/10 {
		t.Fatalf("cancelled Run took %v; a whole decode takes %v and the cancel came after %v", took, full, full/10)
	}
	t.Logf("whole decode %v, cancelled Run returned after %v (cancel at %v)", full, took, full/10)
}
