package calib

import (
	"path/filepath"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// BenchmarkCaptureOverhead measures calibration throughput with the
// capture hook (every block output folded into per-sample means, last
// tokens and Block Influence sums) against the same decodes with no hook,
// same model, threads and batch, in one run. It reports both tokens/s and
// their ratio (goal ≥ 0.95).
func BenchmarkCaptureOverhead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.gguf")
	cfg := synth.Config{Arch: "llama", Blocks: 8, Embd: 512, FFN: 1408, Heads: 8, KVHeads: 4, Vocab: 512, Ctx: 512, Type: gguf.TypeF16, Seed: 1}
	if err := synth.Write(path, cfg); err != nil {
		b.Fatal(err)
	}
	m, err := cgo.LoadModel(path, cgo.ModelParams{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const n, t = 16, 128
	chunks := make([][]int32, n)
	for i := range chunks {
		chunks[i] = make([]int32, t)
		for j := range chunks[i] {
			chunks[i][j] = int32(3 + (i*131+j*17)%500)
		}
		chunks[i][0] = m.BOS()
	}
	opt := runner.Options{Threads: 2, BatchTokens: 512, Logits: true}
	var bare, hooked float64
	b.ResetTimer()
	for range b.N {
		st, err := runner.Run(m, chunks, opt, nil)
		if err != nil {
			b.Fatal(err)
		}
		bare += st.TokensPerSecond()
		r, err := Run(m, chunks, Options{Threads: 2, BatchTokens: 512})
		if err != nil {
			b.Fatal(err)
		}
		hooked += r.TokPerSec
	}
	b.ReportMetric(bare/float64(b.N), "bare-tok/s")
	b.ReportMetric(hooked/float64(b.N), "capture-tok/s")
	b.ReportMetric(hooked/bare, "ratio")
}
