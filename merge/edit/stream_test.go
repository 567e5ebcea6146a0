package edit

// Tests of Rewrite as a stream: cancellation and bounded memory.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

func TestRewriteCancel(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Type = gguf.TypeF16
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.gguf")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, c := range []struct {
		name     string
		plan     *merge.Plan
		progress bool
	}{
		{"fusion", rwPlan(t, 4, rwFuse(1, 0.5)), false},
		{"fusion with progress", rwPlan(t, 4, rwFuse(1, 0.5)), true},
		{"drop with progress", rwPlan(t, 4, rwDrop(1)), true},
		// Only copies: no fused chunk between which to check the context.
		{"drop", rwPlan(t, 4, rwDrop(1)), false},
	} {
		t.Run(c.name+"/before", func(t *testing.T) {
			opt := RewriteOptions{}
			if c.progress {
				opt.Progress = func(done, total int64) {}
			}
			err := Rewrite(cancelled, in, b, c.plan, out, nil, opt)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Rewrite with a cancelled context: %v, want context.Canceled", err)
			}
			rwDirOnly(t, dir, "in.gguf")
			os.Remove(out)
		})
	}

	// Cancelled during the write, by the progress callback after the
	// first tensor: the write stops, and an existing output is untouched.
	t.Run("during", func(t *testing.T) {
		old := []byte("an older output")
		if err := os.WriteFile(out, old, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(out)
		for _, chunk := range []int{0, 1000} {
			ctx, cancel := context.WithCancel(context.Background())
			calls := 0
			err := Rewrite(ctx, in, b, rwPlan(t, 4, rwFuse(1, 0.5)), out, nil, RewriteOptions{ChunkBytes: chunk,
				Progress: func(done, total int64) {
					calls++
					cancel()
				}})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("chunk %d: Rewrite cancelled midway: %v, want context.Canceled", chunk, err)
			}
			if calls != 1 {
				t.Errorf("chunk %d: progress called %d times after the cancel", chunk, calls)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, old) {
				t.Errorf("chunk %d: the existing output changed", chunk)
			}
			rwDirOnly(t, dir, "in.gguf", "out.gguf")
		}
	})
}

// heapPeak samples HeapInuse until stop is called and returns the peak.
func heapPeak() (sample func(), stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	sample = func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return sample, func() uint64 {
		close(done)
		wg.Wait()
		sample()
		return peak
	}
}

// TestRewriteMemoryBounded rewrites a ~64 MiB F16 model with fusions and
// checks that the Go heap grows by far less than the model: by at most three
// blocks in float32 plus 16 MiB, and less than half the file.
func TestRewriteMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 64 MiB model")
	}
	dir := t.TempDir()
	cfg := synth.Config{Arch: "llama", Blocks: 40, Embd: 256, FFN: 704, Heads: 4, KVHeads: 4, Vocab: 4096, Ctx: 256, Type: gguf.TypeF16, Seed: 3}
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	blockElems := block0Elements(in)
	blockF32 := 4 * blockElems
	// Fusions spread over the model, highest first so that indices are
	// original ones; one three-block fusion.
	plan := rwPlan(t, 40, rwFuse(30, 0.5), rwFuse(20, 0.25), rwFuse(10, 0.75), rwFuse(0, 0.5), rwFuse(0, 0.4))
	out := filepath.Join(dir, "out.gguf")

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sample, stop := heapPeak()
	err = Rewrite(context.Background(), in, b, plan, out, nil, RewriteOptions{ChunkBytes: 256 << 10,
		Progress: func(done, total int64) { sample() }})
	peak := stop()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	limit := min(3*int64(blockF32)+16<<20, in.Size/2)
	t.Logf("model %.1f MiB, one block %.1f MiB in float32; heap in use %.1f MiB before, peak %.1f MiB (growth %.1f MiB, limit %.1f MiB); allocated %.1f MiB in all",
		float64(in.Size)/(1<<20), float64(blockF32)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(peak)/(1<<20),
		float64(growth)/(1<<20), float64(limit)/(1<<20), float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	if growth > limit {
		t.Errorf("heap grew by %.1f MiB rewriting a %.1f MiB model, want at most %.1f MiB", float64(growth)/(1<<20), float64(in.Size)/(1<<20), float64(limit)/(1<<20))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(in.Size) {
		t.Errorf("allocated %.1f MiB in all rewriting a %.1f MiB model", float64(alloc)/(1<<20), float64(in.Size)/(1<<20))
	}
	f := rwOpen(t, out)
	if n, _ := f.Uint("llama.block_count"); n != 35 {
		t.Errorf("block_count %d, want 35", n)
	}
}

// TestRewriteAllocProportional checks that a fusion allocates in proportion
// to the tensors it fuses, not to ChunkBytes: with the default 16 MiB
// chunk, fusing two blocks of a 1 MB model must not allocate a 16 MiB
// working set for each small tensor.
func TestRewriteAllocProportional(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Type = gguf.TypeF16
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	blockElems := block0Elements(in)
	plan := rwPlan(t, 4, rwFuse(1, 0.5))
	out := filepath.Join(dir, "out.gguf")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err = Rewrite(context.Background(), in, b, plan, out, nil, RewriteOptions{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// Decoding two sources, the float32 accumulator and scratch, the raw
	// and encoded bytes: a few times one block in float32, plus the
	// writer's buffers.
	alloc := after.TotalAlloc - before.TotalAlloc
	limit := 16*4*blockElems + 4<<20
	t.Logf("one block %.2f MiB in float32; the rewrite allocated %.1f MiB (limit %.1f MiB)",
		float64(4*blockElems)/(1<<20), float64(alloc)/(1<<20), float64(limit)/(1<<20))
	if alloc > limit {
		t.Errorf("fusing one pair of blocks of %.2f MiB (float32) allocated %.1f MiB: the chunk buffers are not capped at the tensor's size",
			float64(4*blockElems)/(1<<20), float64(alloc)/(1<<20))
	}
}

// block0Elements returns the number of weights in block 0 of f.
func block0Elements(f *gguf.File) uint64 {
	var n uint64
	for _, ti := range f.Tensors {
		if blk, _ := rwBlockOf(ti.Name); blk == 0 {
			n += ti.Elements()
		}
	}
	return n
}
