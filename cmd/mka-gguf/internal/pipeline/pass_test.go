package pipeline

import (
	"math"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge"
)

// TestPrefillEqualsPass checks that the first alignment pass made inside
// the calibration pass gives the statistics and signals of a pass of its
// own over the same chunks: with a budget for every candidate (chunks
// [0, n)) and with a budget for two (chosen by BI on the first chunks, then
// chunks [warm, warm+n)).
func TestPrefillEqualsPass(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	const ctx = 64
	chunks := tokens(t, fx.m, texts(t), 24, ctx, 1)
	per := merge.AlignStatsBytes(fx.m.NEmbd())
	for _, tc := range []struct {
		name   string
		budget int64
		want   int // candidates with statistics
	}{{"all", 0, fx.m.NLayer() - 1}, {"two", 2 * per, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			pf := prefilled(t, fx, chunks, ctx, tc.budget, 0, 1)
			defer pf.Close()
			if !pf.done() || pf.Err() != nil {
				t.Fatalf("prefill incomplete (err %v)", pf.Err())
			}
			align := pf.AlignChunks(chunks)
			if len(align) != 12 || (tc.budget > 0) != (&align[0][0] != &chunks[0][0]) {
				t.Fatalf("alignment chunks: %d, first is chunk 0: %v", len(align), &align[0][0] == &chunks[0][0])
			}
			drops, stats, sig := pf.result()
			if len(drops) != tc.want {
				t.Fatalf("%d candidates with statistics, want %d", len(drops), tc.want)
			}
			e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewSearcher(e, align, nil, Config{Threads: 2, Candidates: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			own, ownSig, err := s.passStats(drops, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range drops {
				a, err := stats[j].Solve(1e-3)
				if err != nil {
					t.Fatal(err)
				}
				b, err := own[j].Solve(1e-3)
				if err != nil {
					t.Fatal(err)
				}
				if a.Tokens != b.Tokens || math.Abs(a.Residual-b.Residual) > 1e-5 || math.Abs(a.Stream-b.Stream) > 1e-5 {
					t.Errorf("drop %d: prefill residual %g (stream %g, %d tokens), own pass %g (%g, %d)", j, a.Residual, a.Stream, a.Tokens, b.Residual, b.Stream, b.Tokens)
				}
			}
			if tc.budget == 0 {
				for j, v := range ownSig {
					if math.Abs(v[0]-sig[j][0]) > 1e-9 || math.Abs(v[1]-sig[j][1]) > 1e-9 {
						t.Errorf("block %d: prefill BI/angular %v, own pass %v", j, sig[j], v)
					}
				}
			}
		})
	}
}

// TestRace checks the race's rule on synthetic per-chunk losses: a clearly
// worse candidate loses once it has enough chunks, an equal or better one
// never does, and nothing is decided before raceMinChunks or against a
// best scored on fewer chunks.
func TestRace(t *testing.T) {
	const chunks, tokens = 16, 255
	best := &heldScore{}
	for i := range chunks {
		best.sum = append(best.sum, tokens*(2+0.1*math.Sin(float64(i))))
		best.n = append(best.n, tokens)
	}
	score := func(k int, shift, noise float64) *heldScore {
		h := &heldScore{}
		for i := range k {
			h.sum = append(h.sum, best.sum[i]+tokens*(shift+noise*math.Cos(3*float64(i))))
			h.n = append(h.n, tokens)
		}
		return h
	}
	if !score(raceMinChunks, 0.05, 0.01).cannotWin(best, 0) {
		t.Error("a candidate 0.05 nats/token worse (noise 0.01) did not lose")
	}
	if score(raceMinChunks-1, 0.05, 0.01).cannotWin(best, 0) {
		t.Error("decided before raceMinChunks chunks")
	}
	if !score(raceMinChunks, 0.05, 0.01).cannotWin(score(raceMinChunks, 0, 0), 0) {
		t.Error("a clearly worse candidate did not lose against a leader scored on as many chunks (the first stage)")
	}
	if score(chunks, 0.05, 0.01).cannotWin(score(chunks-1, 0, 0), 0) {
		t.Error("decided against a best scored on fewer chunks")
	}
	for _, shift := range []float64{0, -0.05} {
		for k := raceMinChunks; k < chunks; k++ {
			if score(k, shift, 0.01).cannotWin(best, 0) {
				t.Errorf("a candidate %g nats/token off lost after %d chunks", shift, k)
			}
		}
	}
	if score(8, 0.01, 0.2).cannotWin(best, 0) {
		t.Error("a candidate 0.01 worse with noise 0.2 lost after 8 chunks (not significant)")
	}
	// The indifference zone: a candidate equal to the best up to a little
	// noise stops once it surely cannot gain more than the tolerance; one
	// that is better, or too noisy to tell, goes on.
	if !score(raceMinChunks, 0, 0.0002).cannotWin(best, raceTolerance) {
		t.Error("a candidate equal to the best (noise 0.0002) was not stopped by the tolerance")
	}
	if score(raceMinChunks, 0, 0.0002).cannotWin(best, 0) {
		t.Error("without tolerance, a candidate equal to the best lost")
	}
	for k := raceMinChunks; k < chunks; k++ {
		if score(k, -2*raceTolerance, 0.0002).cannotWin(best, raceTolerance) {
			t.Errorf("a candidate better by twice the tolerance was stopped after %d chunks", k)
		}
	}
	if score(raceMinChunks, 0, 0.05).cannotWin(best, raceTolerance) {
		t.Error("a candidate with noise 0.05 was called equal after 6 chunks")
	}
}

// TestSearchETA checks that the progress lines' ETA covers the whole
// search: the rest of the phase at its rate so far, the step's round after
// its pass, and a pass and a round for every later step.
func TestSearchETA(t *testing.T) {
	c := &clock{last: 3, step: 1, pass: 30 * time.Second, round: 0}
	c.phaseStart = time.Now().Add(-10 * time.Second)
	// Half-way through the first round measured: 10 s left of a 20-s
	// round, then steps 3 and 4 at 30 + 20 s each.
	if got, want := c.eta(false, 0.5, 0), ", search ETA 1m50s"; got != want {
		t.Errorf("in a round: %q, want %q", got, want)
	}
	// A quarter through a pass, the last round 40 s: 30 s left of a 40-s
	// pass, this step's round, then two steps of the last pass and round.
	c.pass, c.round = 25*time.Second, 40*time.Second
	if got, want := c.eta(true, 0.25, 0), ", search ETA 3m20s"; got != want {
		t.Errorf("in a pass: %q, want %q", got, want)
	}
	if got := c.eta(true, 0, 0); got != "" {
		t.Errorf("before any progress: %q, want none", got)
	}
	c.last = -1
	if got := c.eta(false, 0.5, 0); got != "" {
		t.Errorf("outside Search: %q, want none", got)
	}
}
