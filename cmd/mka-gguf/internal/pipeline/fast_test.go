package pipeline

import (
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// A commit keeps the fits of the candidates it does not touch, renumbered,
// and drops those whose survivor or blocks it changed.
func TestAfterCommit(t *testing.T) {
	for _, tc := range []struct {
		r, best    int
		keep       []int // drops kept valid, renumbered
		candidates []int
	}{
		// blk 5 removed, blk 4 aligned: 4 (its blocks end at the survivor)
		// and 6 (its survivor is gone) are stale.
		{r: 1, best: 5, candidates: []int{1, 3, 4, 5, 6, 7, 11}, keep: []int{1, 3, 6, 10}},
		// a run of 2 (blks 4..5) removed, blk 3 aligned.
		{r: 2, best: 4, candidates: []int{1, 2, 3, 4, 6, 7, 8}, keep: []int{1, 5, 6}},
	} {
		var pool []*Candidate
		var best *Candidate
		for _, j := range tc.candidates {
			c := &Candidate{Drop: j}
			if j == tc.best {
				best = c
			}
			pool = append(pool, c)
		}
		var keep []int
		for _, c := range afterCommit(pool, best, tc.r) {
			keep = append(keep, c.Drop)
		}
		if !equalInts(keep, tc.keep) {
			t.Errorf("run %d, commit %d: kept %v, want %v", tc.r, tc.best, keep, tc.keep)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Fast takes the filter's best valid fit at every step (the first step's
// is the best of an alignment pass over the unmodified model), makes no
// pass while fits are left, and the written file is the model it edited
// in memory.
func TestFast(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	chunks := tokens(t, fx.m, tx[:300], 16, 64, 1)
	test := tokens(t, fx.m, tx[300:], 2, 64, 2)
	e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Reset()
	cfg := Config{Threads: 2, Align: true, Candidates: 1}
	s, err := NewSearcher(e, chunks, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cands, _, err := s.fit(0)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := s.best(cands).Drop

	s, err = NewSearcher(e, chunks, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 4
	r, err := s.Fast(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != n || len(r.Plan.Layout) != fx.m.NLayer()-n {
		t.Fatalf("%d steps, %d blocks left; want %d and %d", len(r.Steps), len(r.Plan.Layout), n, fx.m.NLayer()-n)
	}
	if r.Steps[0].Drop != want || r.Steps[0].PassBlocks == 0 {
		t.Errorf("step 1 removed blk %d after %d pass blocks; want blk %d, the best of a pass", r.Steps[0].Drop, r.Steps[0].PassBlocks, want)
	}
	passes := 0
	for i, st := range r.Steps {
		if st.PassBlocks > 0 {
			passes++
		}
		if !(st.Residual < st.Unaligned) {
			t.Errorf("step %d: residual %g, %g without: the alignment did not lower it", i+1, st.Residual, st.Unaligned)
		}
	}
	if passes != 1 {
		t.Errorf("%d alignment passes, want the first step's only (11 candidates for 4 steps)", passes)
	}
	dm := maxDiff(logits(t, fx.m, test), logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align}), test))
	t.Logf("removed %v with %d passes; file vs memory %.2g", r.Plan.Layout, passes, dm)
	// A survivor aligned at several steps holds their alignments folded
	// one after the other in float32; the file folds their product once
	// (Search's merges differ as much: 0.004 here). A wrong or missing
	// alignment differs by whole logits.
	if dm > 1e-2 {
		t.Errorf("file vs in-memory model: max logit difference %g", dm)
	}
}
