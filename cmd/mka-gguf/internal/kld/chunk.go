package kld

import "runtime"

// Logits returns a model's logits at position j of the chunk being
// scored (valid until the next decode).
type Logits func(j int) []float32

// ChunkDists fills d (len(chunk) − 1 entries) with the base model's
// distributions at positions 0 … len(chunk)−2 of one decoded chunk,
// keeping the k most probable tokens (0: all), as NewReference does:
// for comparing on decodes made elsewhere (the merge search's).
func ChunkDists(d []Dist, chunk []int32, logits Logits, k int) {
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	parallel(len(chunk)-1, func(w, j int) {
		FromLogits(&d[j], logits(j), chunk[j+1], k, &scratch[w])
	})
}

// AddChunk scores a model's logits at positions 0 … len(chunk)−2 of one
// decoded chunk against the base's distributions there (ChunkDists) and
// adds the tokens in order, as CompareReference does.
func (a *Accumulator) AddChunk(base []Dist, chunk []int32, logits Logits) {
	toks := make([]Token, len(chunk)-1)
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	parallel(len(toks), func(w, j int) {
		toks[j] = Score(&base[j], logits(j), chunk[j+1], &scratch[w])
	})
	for _, t := range toks {
		a.Add(t)
	}
}
