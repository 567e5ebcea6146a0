package kld

import (
	"fmt"
	"runtime"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// Reference is a base model's distributions on chunks kept in memory, as
// Save keeps them in a file (opt.TopK tokens each plus the tail), so that
// the base model can be closed before the other one is loaded: merge's
// closing quality check never holds IN and OUT at once. At TopK 1024 it
// takes 8 KiB per scored position.
type Reference struct {
	chunks [][]int32
	first  int
	topK   int
	vocab  int
	dists  [][]Dist // per chunk, per scored position
}

// NewReference decodes chunks with base and keeps its distributions at
// positions [opt.First, len−1) of every chunk.
func NewReference(base *cgo.Model, chunks [][]int32, opt Options) (*Reference, error) {
	t, err := checkChunks(chunks, opt.First)
	if err != nil {
		return nil, err
	}
	k := keptTokens(opt.TopK, base.NVocab())
	m := t - 1 - opt.First
	r := &Reference{chunks: chunks, first: opt.First, topK: k, vocab: base.NVocab(), dists: make([][]Dist, len(chunks))}
	err = decodeBase(base, chunks, opt, k, func(first, n int) []Dist {
		d := make([]Dist, n*m) // kept: fresh for every group
		for s := range n {
			r.dists[first+s] = d[s*m : (s+1)*m]
		}
		return d
	}, nil)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// keptTokens is the top-k a base distribution keeps: k, or 0 (all) when k
// covers the vocabulary.
func keptTokens(k, vocab int) int {
	if k >= vocab {
		return 0
	}
	return k
}

// decodeBase decodes chunks with base, as many per decode as
// opt.BatchTokens allows, and fills the distributions at positions
// [opt.First, len−1) of each, keeping k tokens (0: all): into(first, n)
// says where those of chunks [first, first+n) go (n·m of them, chunk by
// chunk), and done, when set, is called once they are filled.
func decodeBase(base *cgo.Model, chunks [][]int32, opt Options, k int, into func(first, n int) []Dist, done func(first, n int, d []Dist) error) error {
	t := len(chunks[0])
	m := t - 1 - opt.First
	g := min(runner.SeqsPerDecode(t, opt.BatchTokens), len(chunks))
	dec, err := newDecoder(base, t, g, opt)
	if err != nil {
		return err
	}
	defer dec.close()
	scratch := make([]Scratch, runtime.GOMAXPROCS(0))
	for first := 0; first < len(chunks); first += g {
		if opt.Context != nil {
			if err := opt.Context.Err(); err != nil {
				return err
			}
		}
		n := min(g, len(chunks)-first)
		if err := dec.decode(chunks[first : first+n]); err != nil {
			return err
		}
		d := into(first, n)
		parallel(n*m, func(w, i int) {
			s, j := i/m, i%m+opt.First
			FromLogits(&d[i], dec.logits(s, j), chunks[first+s][j+1], k, &scratch[w])
		})
		if done != nil {
			if err := done(first, n, d); err != nil {
				return err
			}
		}
		if opt.Progress != nil {
			opt.Progress(first+n, len(chunks))
		}
	}
	return nil
}

// CompareReference scores model against ref on ref's chunks.
func CompareReference(ref *Reference, model *cgo.Model, opt Options) (Summary, error) {
	if model.NVocab() != ref.vocab {
		return Summary{}, fmt.Errorf("%s has a vocabulary of %d tokens, the reference %d", model.Path(), model.NVocab(), ref.vocab)
	}
	opt.First = ref.first
	s, err := run(model, ref.chunks, opt, func(gfirst int, dst [][]Dist) error {
		for i := range dst {
			copy(dst[i], ref.dists[gfirst+i])
		}
		return nil
	})
	s.TopK = ref.topK
	return s, err
}
