package pipeline

import (
	"math"
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge"
)

// A search whose passes keep the fits a commit left exact and start on a
// stored stream makes the choices of one whose passes fit every candidate
// from the tokens, with the same losses and residuals (to float rounding:
// the same blocks, decoded in graphs of other sizes), for fewer blocks
// decoded: with one stored stream, and with several and step 1's fits and
// streams from the calibration pass (Prefill). The statistics budget holds
// 4 candidates, as on a large model, so that they lie deep and the passes
// can start late.
func TestReusedPassesEqualWhole(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	cal := tokens(t, fx.m, tx[:300], 24, 64, 1)
	held := tokens(t, fx.m, tx[300:], 8, 64, 2)
	stats := 4 * merge.AlignStatsBytes(fx.m.NEmbd())
	for _, tc := range []struct {
		prefill bool
		streams int64
	}{{false, 1}, {true, 4}} {
		per := int64(12) * 64 * int64(fx.m.NEmbd()) * 4
		search := func(whole bool) *Result {
			align := cal[:12]
			cfg := Config{Threads: 2, Align: true, Rho: 1e-3, Candidates: 3, Race: true,
				MaxStatsBytes: stats, StreamBytes: tc.streams * per}
			if tc.prefill {
				pf := prefilled(t, fx, cal, 64, stats, cfg.StreamBytes, 3)
				defer pf.Close()
				align, cfg.Prefill = pf.AlignChunks(cal), pf
			}
			e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Reset()
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
			t.Logf("prefill %v, %d streams, step %d: drop %d / %d, held-back %.6f / %.6f, residual %.6f / %.6f, pass blocks %d / %d",
				tc.prefill, tc.streams, i+1, g.Drop, w.Drop, g.HeldNLL, w.HeldNLL, g.Residual, w.Residual, g.PassBlocks, w.PassBlocks)
			if g.Drop != w.Drop || !near(g.HeldNLL, w.HeldNLL) || !near(g.Residual, w.Residual) {
				t.Errorf("step %d: drop %d, held-back %g, residual %g; whole passes: drop %d, %g, %g", i+1, g.Drop, g.HeldNLL, g.Residual, w.Drop, w.HeldNLL, w.Residual)
			}
		}
		if !(blocks(got) < blocks(want)) {
			t.Errorf("passes ran %d blocks, whole passes %d: nothing saved", blocks(got), blocks(want))
		}
		if tc.prefill && !(got.Steps[1].PassBlocks < want.Steps[1].PassBlocks) {
			t.Errorf("step 2's pass ran %d blocks, from the tokens %d: the calibration pass's streams unused", got.Steps[1].PassBlocks, want.Steps[1].PassBlocks)
		}
	}
}

// spread keeps the shallowest block and spaces the rest evenly.
func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		n    int
		want []int
	}{
		{[]int{5, 3, 3, 0, -1, 9, 7}, 2, []int{3, 9}},
		{[]int{5, 3, 3, 0, -1, 9, 7}, 1, []int{3}},
		{[]int{5, 3, 3, 0, -1, 9, 7}, 3, []int{3, 5, 9}},
		{[]int{5, 3, 3, 0, -1, 9, 7}, 10, []int{3, 5, 7, 9}},
		{[]int{0}, 2, []int{}},
		{[]int{4, 8}, 0, nil},
	} {
		if got := spread(tc.in, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("spread(%v, %d) = %v, want %v", tc.in, tc.n, got, tc.want)
		}
	}
}
