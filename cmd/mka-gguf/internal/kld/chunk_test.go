package kld

import (
	"math"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
)

// TestChunkNLL checks that ChunkNLL's parallel sum over a chunk equals the
// loop of ppl.NLL over its positions bit for bit, and that AddChunk returns
// the same float64 (the merge search compares candidates scored either
// way).
func TestChunkNLL(t *testing.T) {
	const n, vocab = 37, 5000
	rows := make([][]float32, n)
	base := make([][]float32, n)
	chunk := make([]int32, n+1)
	for k := range rows {
		rows[k], base[k] = make([]float32, vocab), make([]float32, vocab)
		for v := range rows[k] {
			rows[k][v] = float32(math.Sin(float64(k*vocab+v))) * 12
			base[k][v] = float32(math.Cos(float64(k*vocab+v))) * 10
		}
		chunk[k+1] = int32((k * 977) % vocab)
	}
	var loop float64
	for k := range n {
		loop += ppl.NLL(rows[k], chunk[k+1])
	}
	logits := func(k int) []float32 { return rows[k] }
	if got := ChunkNLL(chunk, logits); got != loop {
		t.Errorf("ChunkNLL = %v, the loop %v", got, loop)
	}
	dists := make([]Dist, n)
	ChunkDists(dists, chunk, func(k int) []float32 { return base[k] }, 64)
	var a Accumulator
	if got := a.AddChunk(dists, chunk, logits); got != loop {
		t.Errorf("AddChunk's NLL = %v, the loop %v", got, loop)
	}
	if got := ChunkNLL(chunk[:1], logits); got != 0 {
		t.Errorf("ChunkNLL of a one-token chunk = %v, want 0", got)
	}
}
