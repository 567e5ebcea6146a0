package merge

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

func TestScratchChunk(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Type = gguf.TypeF16
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, _ := InspectBlocks(in)
	plan := rwPlan(t, 4, rwFuse(1, 0.5))
	for _, c := range []int{0, 1 << 16, 1000, 0} {
		st := time.Now()
		for i := 0; i < 5; i++ {
			if err := Rewrite(context.Background(), in, b, plan, filepath.Join(dir, "o.gguf"), nil, RewriteOptions{ChunkBytes: c}); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("chunk %d: %v per rewrite", c, time.Since(st)/5)
	}
}
