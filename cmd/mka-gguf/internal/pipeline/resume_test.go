package pipeline

import (
	"math"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// TestResumedRoundEqualsWhole runs the same three-step search with
// held-back decodes resumed at each candidate's first changed block and
// with whole decodes: every candidate's residuals and held-back loss are
// the same bit for bit (so are the race's stops and the choices), for
// held-back chunks as long as the alignment chunks (one context for both)
// and shorter (a context of their own), with step 1's statistics from its
// own pass or from the calibration pass, while the resumed rounds run
// fewer blocks.
func TestResumedRoundEqualsWhole(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	cal := tokens(t, fx.m, tx[:300], 24, 64, 1)
	for _, tc := range []struct {
		heldLen int
		prefill bool // step 1's statistics from the calibration pass
	}{{64, false}, {48, false}, {64, true}} {
		heldLen := tc.heldLen
		held, err := calib.Tokens(fx.m, tx[300:], 16, heldLen, 2)
		if err != nil {
			t.Fatal(err)
		}
		align := cal[:12]
		run := func(whole bool) *Result {
			cfg := Config{Threads: 2, Align: true, Rho: 1e-3, Candidates: 6, Race: true, WholeDecodes: whole}
			if tc.prefill {
				pf := prefilled(t, fx, cal, 64, 0, 0, 6)
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
			if !whole && !s.sess.resume {
				t.Fatal("resumed decodes are off for a llama model")
			}
			r, err := s.Search(3)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		wr, rr := run(true), run(false)
		for k, ws := range wr.Steps {
			rs := rr.Steps[k]
			t.Logf("held %d tokens, step %d: drop %d, blocks run %d resumed vs %d whole, %d chunks with logits", heldLen, k+1, rs.Drop, rs.HeldBlocks, ws.HeldBlocks, rs.HeldLogits)
			if rs.Drop != ws.Drop || rs.HeldNLL != ws.HeldNLL {
				t.Errorf("held %d, step %d: resumed drops blk %d (loss %v), whole blk %d (loss %v)", heldLen, k+1, rs.Drop, rs.HeldNLL, ws.Drop, ws.HeldNLL)
			}
			if len(rs.Candidates) != len(ws.Candidates) {
				t.Fatalf("step %d: %d candidates resumed, %d whole", k+1, len(rs.Candidates), len(ws.Candidates))
			}
			for i, wc := range ws.Candidates {
				rc := rr.Steps[k].Candidates[i]
				eq := func(a, b float64) bool { return a == b }
				same := func(a, b *float64) bool {
					return (a == nil) == (b == nil) && (a == nil || eq(*a, *b) || math.IsNaN(*a) && math.IsNaN(*b))
				}
				if !eq(rc.Residual, wc.Residual) || !eq(rc.Stream, wc.Stream) || !eq(rc.BI, wc.BI) || !eq(rc.Angular, wc.Angular) {
					t.Errorf("held %d, step %d, candidate blk %d: resumed residual %v, stream %v, BI %v, angular %v; whole %v, %v, %v, %v", heldLen, k+1, wc.Drop,
						rc.Residual, rc.Stream, rc.BI, rc.Angular, wc.Residual, wc.Stream, wc.BI, wc.Angular)
				}
				if rc.Drop != wc.Drop || !same(rc.Held, wc.Held) || !same(rc.Partial, wc.Partial) || rc.RaceChunks != wc.RaceChunks {
					t.Errorf("held %d, step %d, candidate blk %d: resumed %v/%v after %d chunks, whole %v/%v after %d", heldLen, k+1, wc.Drop,
						rc.Held, rc.Partial, rc.RaceChunks, wc.Held, wc.Partial, wc.RaceChunks)
				}
			}
			if ws.HeldBlocks != ws.HeldLogits*fx.m.NLayer() || rs.HeldLogits != ws.HeldLogits {
				t.Errorf("step %d: whole decodes ran %d blocks for %d chunks (resumed: %d chunks)", k+1, ws.HeldBlocks, ws.HeldLogits, rs.HeldLogits)
			}
			if rs.HeldBlocks >= ws.HeldBlocks {
				t.Errorf("step %d: resumed decodes ran %d blocks, whole ones %d", k+1, rs.HeldBlocks, ws.HeldBlocks)
			}
		}
	}
}

// TestSearchQualityEqualsFile checks the quality check made from the
// search's own decodes (Config.Quality) against the one merge made before:
// IN's distributions from a decode of its own, compared with the merged
// model written to a file and loaded. One and two removed blocks (IN's
// distributions then come from the last round's own stage captures, or
// from step 1's), whole distributions and the top 64 tokens.
func TestSearchQualityEqualsFile(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	align := tokens(t, fx.m, tx[:300], 12, 64, 1)
	held := tokens(t, fx.m, tx[300:], 16, 48, 2)
	for _, tc := range []struct{ remove, topK int }{{1, 0}, {2, 64}} {
		e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSearcher(e, align, held, Config{Threads: 2, Align: true, Rho: 1e-3, Candidates: 6, Race: true, Quality: true, QualityTopK: tc.topK})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.Search(tc.remove)
		s.Close()
		if rerr := e.Reset(); err == nil {
			err = rerr
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Quality == nil {
			t.Fatalf("remove %d: no quality from the search", tc.remove)
		}
		got := *r.Quality
		out := rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align})
		ref, err := kld.NewReference(fx.m, held, kld.Options{Threads: 2, TopK: tc.topK})
		if err != nil {
			t.Fatal(err)
		}
		want, err := kld.CompareReference(ref, out, kld.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("remove %d, top %d: search %s; file %s", tc.remove, tc.topK, got.Line(), want.Line())
		near := func(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }
		if got.Tokens != want.Tokens || got.TopK != tc.topK || !near(got.KLD, want.KLD, 1e-3) || !near(got.PPL, want.PPL, 1e-4) ||
			!near(got.BasePPL, want.BasePPL, 1e-5) || math.Abs(got.SameTop-want.SameTop)*float64(got.Tokens) > 100.5 {
			t.Errorf("remove %d, top %d: the search's quality %+v, the file's %+v", tc.remove, tc.topK, got, want)
		}
	}
}
