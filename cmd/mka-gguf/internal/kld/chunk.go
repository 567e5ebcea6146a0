package kld

import (
	"runtime"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
)

// Logits returns a model's logits at position j of the chunk being
// scored (valid until the next decode). ChunkDists and AddChunk call it
// from the calling goroutine only, then read the rows concurrently.
type Logits func(j int) []float32

// rows returns logits(j) for the chunk's positions 0 … len(chunk)−2.
func rows(chunk []int32, logits Logits) [][]float32 {
	r := make([][]float32, max(len(chunk)-1, 0))
	for j := range r {
		r[j] = logits(j)
	}
	return r
}

// ChunkDists fills d (len(chunk) − 1 entries) with the base model's
// distributions at positions 0 … len(chunk)−2 of one decoded chunk,
// keeping the k most probable tokens (0: all), as NewReference does:
// for comparing on decodes made elsewhere (the merge search's).
func ChunkDists(d []Dist, chunk []int32, logits Logits, k int) {
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	rs := rows(chunk, logits)
	parallel(len(rs), func(w, j int) {
		FromLogits(&d[j], rs[j], chunk[j+1], k, &scratch[w])
	})
}

// AddChunk scores a model's logits at positions 0 … len(chunk)−2 of one
// decoded chunk against the base's distributions there (ChunkDists) and
// adds the tokens in order, as CompareReference does. It returns the
// model's next-token losses summed in order, which are ChunkNLL's bit for
// bit (both take ppl.LogSumExp), so that a caller that needs both
// computes each softmax once.
func (a *Accumulator) AddChunk(base []Dist, chunk []int32, logits Logits) float64 {
	rs := rows(chunk, logits)
	toks := make([]Token, len(rs))
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	parallel(len(toks), func(w, j int) {
		toks[j] = Score(&base[j], rs[j], chunk[j+1], &scratch[w])
	})
	var nll float64
	for _, t := range toks {
		a.Add(t)
		nll += t.NLL
	}
	return nll
}

// ChunkNLL returns Σ ppl.NLL(logits(k), chunk[k+1]) over the positions
// k = 0 … len(chunk)−2 of a decoded chunk, summed in order (the float64 of
// a loop over them) with the softmaxes split over the CPUs: the loss
// AddChunk returns, for a chunk without a base to compare with.
func ChunkNLL(chunk []int32, logits Logits) float64 {
	rs := rows(chunk, logits)
	nll := make([]float64, len(rs))
	parallel(len(rs), func(_, k int) {
		nll[k] = ppl.NLL(rs[k], chunk[k+1])
	})
	var sum float64
	for _, v := range nll {
		sum += v
	}
	return sum
}
