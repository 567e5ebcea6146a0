package pipeline

import (
	"math"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge"
)

// A search whose passes keep the fits a commit left exact and start on the
// stored stream makes the choices of one whose passes fit every candidate
// from the tokens, with the same losses and residuals (to float rounding:
// the same blocks, decoded in graphs of other sizes), for fewer blocks
// decoded. The statistics budget holds 4 candidates, as on a large model,
// so that they lie deep and the passes can start late.
func TestReusedPassesEqualWhole(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	align := tokens(t, fx.m, tx[:300], 12, 64, 1)
	held := tokens(t, fx.m, tx[300:], 8, 64, 2)
	search := func(whole bool) *Result {
		e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Reset()
		cfg := Config{Threads: 2, Align: true, Rho: 1e-3, Candidates: 3, Race: true,
			MaxStatsBytes: 4 * merge.AlignStatsBytes(fx.m.NEmbd())}
		s, err := NewSearcher(e, align, held, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.wholePasses = whole
		r, err := s.Search(4)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	got, want := search(false), search(true)
	blocks := func(r *Result) (n int) {
		for _, st := range r.Steps {
			n += st.PassBlocks
		}
		return n
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-4*(1+math.Abs(b)) }
	for i, w := range want.Steps {
		g := got.Steps[i]
		t.Logf("step %d: drop %d / %d, held-back %.6f / %.6f, residual %.6f / %.6f, pass blocks %d / %d",
			i+1, g.Drop, w.Drop, g.HeldNLL, w.HeldNLL, g.Residual, w.Residual, g.PassBlocks, w.PassBlocks)
		if g.Drop != w.Drop || !near(g.HeldNLL, w.HeldNLL) || !near(g.Residual, w.Residual) {
			t.Errorf("step %d: drop %d, held-back %g, residual %g; whole passes: drop %d, %g, %g", i+1, g.Drop, g.HeldNLL, g.Residual, w.Drop, w.HeldNLL, w.Residual)
		}
	}
	if !(blocks(got) < blocks(want)) {
		t.Errorf("passes ran %d blocks, whole passes %d: nothing saved", blocks(got), blocks(want))
	}
}
