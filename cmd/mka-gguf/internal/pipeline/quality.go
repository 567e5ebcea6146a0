package pipeline

import (
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// quality is the closing quality check made from the search's own decodes
// (Config.Quality): the merged model against the loaded model as it was
// before the search (IN) on the held-back chunks, as kld.CompareReference
// compares them. IN's distributions come from step 1's held-back decodes
// (captureHeld runs them to the logits), the merged model's from the
// decodes that score the last round's winner.
type quality struct {
	on  bool
	ref [][]kld.Dist // IN's distributions per held-back chunk
	sum *kld.Summary // the last round's winner against IN
}

// keepQuality keeps the comparison with IN of the last round's winner (or
// of the healing stage's last kept refit), scored as best, when it covers
// every held-back token. IN's distributions stay for the healing stage
// when it follows (Config.Heal).
func (s *Searcher) keepQuality(best *heldScore) {
	if !s.refReady() || best.acc.N() != s.heldTokens() {
		return
	}
	q := best.acc.Summary()
	q.TopK = s.cfg.QualityTopK
	s.quality.sum = &q
	if !s.cfg.Heal {
		s.quality.ref = nil
	}
}

// keepRef decodes held-back chunks [from, upTo) of the committed model
// whole and keeps its distributions (quality.ref).
func (s *Searcher) keepRef(from, upTo int) error {
	return s.sess.score.Run(s.cfg.Context, s.held[from:upTo], nil, s.refAfter(from))
}

// refAfter returns the function that keeps the distributions of a decode
// of held-back chunks from from on (quality.ref, Config.QualityTopK).
func (s *Searcher) refAfter(from int) func(d *runner.Decoded) error {
	return func(d *runner.Decoded) error {
		for i := range d.Count {
			c := from + d.First + i
			ch := s.held[c]
			s.quality.ref[c] = make([]kld.Dist, len(ch)-1)
			kld.ChunkDists(s.quality.ref[c], ch, func(j int) []float32 { return d.Logits(i, j) }, s.cfg.QualityTopK)
		}
		s.work.heldBlocks += d.Count * s.sess.score.Blocks(0)
		s.work.heldLogits += d.Count
		return nil
	}
}

// refReady reports whether the quality check's distributions of every
// held-back chunk are kept.
func (s *Searcher) refReady() bool {
	if !s.quality.on || len(s.quality.ref) == 0 {
		return false
	}
	for _, r := range s.quality.ref {
		if r == nil {
			return false
		}
	}
	return true
}

// heldTokens returns the positions a whole held-back round scores.
func (s *Searcher) heldTokens() int {
	var n int
	for _, ch := range s.held {
		n += len(ch) - 1
	}
	return n
}
