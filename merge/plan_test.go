package merge

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// layoutOf is shorthand for a layout in tests: each output block is a list
// of (block, weight) pairs.
type lay [][]Weighted

func w(b int, x float64) Weighted { return Weighted{Block: b, W: x} }

func checkLayout(t *testing.T, name string, p *Plan, want lay) {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Errorf("%s: Validate: %v", name, err)
	}
	if len(p.Layout) != len(want) {
		t.Fatalf("%s: layout %v, want %v", name, p.Layout, want)
	}
	for o := range want {
		if len(p.Layout[o]) != len(want[o]) {
			t.Fatalf("%s: output %d = %v, want %v", name, o, p.Layout[o], want[o])
		}
		for i := range want[o] {
			g := p.Layout[o][i]
			if g.Block != want[o][i].Block || math.Abs(g.W-want[o][i].W) > 1e-12 {
				t.Errorf("%s: output %d = %v, want %v", name, o, p.Layout[o], want[o])
			}
		}
	}
	if got := p.Removed(); got != p.Original-len(want) || got != len(p.Steps) {
		t.Errorf("%s: Removed = %d, want %d", name, got, p.Original-len(want))
	}
}

// accountedFor checks that every original block is either in the layout or
// dropped by a step, exactly once, and that weights sum to 1.
func accountedFor(t *testing.T, p *Plan) {
	t.Helper()
	used := make([]int, p.Original)
	for _, ws := range p.Layout {
		var s float64
		for _, x := range ws {
			used[x.Block]++
			s += x.W
		}
		if math.Abs(s-1) > 1e-12 {
			t.Errorf("weights sum to %v", s)
		}
	}
	drops := 0
	for _, st := range p.Steps {
		if st.Kind == StepDrop {
			drops++
		}
	}
	missing := 0
	for b, u := range used {
		switch u {
		case 0:
			missing++
		case 1:
		default:
			t.Errorf("block %d used %d times", b, u)
		}
	}
	if missing != drops {
		t.Errorf("%d blocks missing from the layout, %d dropped", missing, drops)
	}
}

func TestPlanPruneReverse(t *testing.T) {
	p, err := PlanPruneReverse(5, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, "reverse", p, lay{{w(0, 1)}, {w(1, 1)}, {w(2, 1)}})
	if p.Steps[0].Blocks[0] != 4 || p.Steps[1].Blocks[0] != 3 {
		t.Errorf("steps %v, want drop 4 then 3", p.Steps)
	}
	accountedFor(t, p)
	for _, bad := range [][2]int{{5, 0}, {5, 5}, {5, 6}, {1, 1}, {5, -1}} {
		if _, err := PlanPruneReverse(bad[0], bad[1]); !errors.Is(err, ErrCount) {
			t.Errorf("PlanPruneReverse(%d, %d) err = %v, want ErrCount", bad[0], bad[1], err)
		}
	}
}

func TestPlanPruneBI(t *testing.T) {
	bi := []float64{0.5, 0.1, 0.3, 0.1, 0.9}
	p, err := PlanPruneBI(bi, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, "bi n=2", p, lay{{w(0, 1)}, {w(2, 1)}, {w(4, 1)}})
	accountedFor(t, p)
	if s := p.Steps[0].Similarity; math.Abs(s-0.9) > 1e-15 {
		t.Errorf("similarity %v, want 1-BI = 0.9", s)
	}
	p, _ = PlanPruneBI(bi, 3)
	checkLayout(t, "bi n=3", p, lay{{w(0, 1)}, {w(4, 1)}})
	// Ties go to the lower index.
	p, _ = PlanPruneBI([]float64{0.2, 0.1, 0.1, 0.1}, 2)
	checkLayout(t, "bi ties", p, lay{{w(0, 1)}, {w(3, 1)}})

	if _, err := PlanPruneBI(bi, 5); !errors.Is(err, ErrCount) {
		t.Errorf("n = L: err = %v", err)
	}
	if _, err := PlanPruneBI([]float64{0.1, math.NaN(), 0.2}, 1); !errors.Is(err, ErrScore) {
		t.Errorf("NaN BI: err = %v", err)
	}
}

func TestPlanPruneAngular(t *testing.T) {
	const l = 6
	ang := mat.NewDense(l+1, l+1, nil)
	for i := 0; i <= l; i++ {
		for j := 0; j <= l; j++ {
			ang.Set(i, j, 0.5)
		}
	}
	// Representations 3 and 5 are closest 2 apart: blocks 3 and 4 lie
	// between them.
	ang.Set(3, 5, 0.1)
	ang.Set(1, 2, 0.01) // not at distance n, ignored
	p, err := PlanPruneAngular(ang, l, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, "angular", p, lay{{w(0, 1)}, {w(1, 1)}, {w(2, 1)}, {w(5, 1)}})
	accountedFor(t, p)
	if s := p.Steps[0].Similarity; math.Abs(s-0.9) > 1e-15 {
		t.Errorf("similarity %v, want 0.9", s)
	}
	// The last possible window: representations L-n and L (the final
	// output) drop the last n blocks.
	ang.Set(4, 6, 0.05)
	p, _ = PlanPruneAngular(ang, l, 2)
	checkLayout(t, "angular last", p, lay{{w(0, 1)}, {w(1, 1)}, {w(2, 1)}, {w(3, 1)}})
	// Ties: lowest l.
	ang.Set(0, 2, 0.05)
	p, _ = PlanPruneAngular(ang, l, 2)
	checkLayout(t, "angular tie", p, lay{{w(2, 1)}, {w(3, 1)}, {w(4, 1)}, {w(5, 1)}})

	if _, err := PlanPruneAngular(ang, l, l); !errors.Is(err, ErrCount) {
		t.Errorf("n = L: err = %v", err)
	}
	if _, err := PlanPruneAngular(mat.NewDense(l, l, nil), l, 2); !errors.Is(err, ErrScore) {
		t.Errorf("L×L matrix: err = %v", err)
	}
	// From AngularMatrix.
	r := newRand(40)
	reps := make([]*mat.Dense, l+1)
	reps[0] = randDense(r, 10, 8)
	for i := 1; i <= l; i++ {
		reps[i] = noisyCopy(r, reps[i-1], []float64{1, 1, 0.01, 0.01, 1, 1}[i-1])
	}
	p, _ = PlanPruneAngular(AngularMatrix(reps), l, 2)
	checkLayout(t, "angular real", p, lay{{w(0, 1)}, {w(1, 1)}, {w(4, 1)}, {w(5, 1)}})
}

// testSim is a 5-block similarity with adjacent similarities
// S01=0.5, S12=0.9, S23=0.6, S34=0.8, all others 0.3, diagonal 1.
func testSim() *mat.SymDense {
	s := mat.NewSymDense(5, nil)
	for i := 0; i < 5; i++ {
		for j := i; j < 5; j++ {
			s.SetSym(i, j, 0.3)
		}
		s.SetSym(i, i, 1)
	}
	s.SetSym(0, 1, 0.5)
	s.SetSym(1, 2, 0.9)
	s.SetSym(2, 3, 0.6)
	s.SetSym(3, 4, 0.8)
	return s
}

func TestPlanMKAGreedy(t *testing.T) {
	sim := testSim()
	p, err := PlanMKA(sim, 1, MKAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, "n=1", p, lay{{w(0, 1)}, {w(1, 0.9), w(2, 0.1)}, {w(3, 1)}, {w(4, 1)}})

	// Step 2: the fused row is min(row1, row2): S(f,0) = min(0.5, 0.3),
	// S(f,3) = min(0.3, 0.6) = 0.3, so (3,4) = 0.8 wins with λ = 0.8.
	p, _ = PlanMKA(sim, 2, MKAOptions{})
	checkLayout(t, "n=2", p, lay{{w(0, 1)}, {w(1, 0.9), w(2, 0.1)}, {w(3, 0.8), w(4, 0.2)}})

	// Step 3: all adjacent pairs at 0.3; the later pair wins: the two
	// fusions fuse with λ = 0.3, composing the weights.
	p, _ = PlanMKA(sim, 3, MKAOptions{})
	checkLayout(t, "n=3", p, lay{{w(0, 1)}, {w(1, 0.3*0.9), w(2, 0.3*0.1), w(3, 0.7*0.8), w(4, 0.7*0.2)}})
	if st := p.Steps[2]; st.Blocks != [2]int{1, 2} || math.Abs(st.Similarity-0.3) > 1e-15 {
		t.Errorf("step 3 = %+v, want blocks 1+2 at S=0.3", st)
	}
	accountedFor(t, p)

	// n = 4 fuses everything into one block.
	p, _ = PlanMKA(sim, 4, MKAOptions{})
	if len(p.Layout) != 1 || len(p.Layout[0]) != 5 {
		t.Errorf("n=4 layout %v", p.Layout)
	}
	accountedFor(t, p)
}

func TestPlanMKAOptions(t *testing.T) {
	sim := testSim()

	// Back to front with threshold 0.7: (3,4)=0.8 first; then the fused
	// row min(row3,row4) gives S(2,f) = min(0.6, 0.3) = 0.3 < 0.7, so the
	// scan moves on to (1,2) = 0.9.
	for _, thr := range []float64{0.7, 0} { // 0: median of {0.5,0.9,0.6,0.8} = 0.7
		p, err := PlanMKA(sim, 2, MKAOptions{Order: OrderBackToFront, Threshold: thr})
		if err != nil {
			t.Fatal(err)
		}
		checkLayout(t, "back-to-front", p, lay{{w(0, 1)}, {w(1, 0.9), w(2, 0.1)}, {w(3, 0.8), w(4, 0.2)}})
		if p.Steps[0].Blocks != [2]int{3, 4} {
			t.Errorf("threshold %v: first step %v, want 3+4", thr, p.Steps[0].Blocks)
		}
	}
	// A threshold nothing passes falls back to the most similar pair.
	p, _ := PlanMKA(sim, 1, MKAOptions{Order: OrderBackToFront, Threshold: 0.95})
	if p.Steps[0].Blocks != [2]int{1, 2} {
		t.Errorf("no pair passes: step %v, want 1+2", p.Steps[0].Blocks)
	}
	// Negative threshold: always the last pair (the published code).
	p, _ = PlanMKA(sim, 3, MKAOptions{Order: OrderBackToFront, Threshold: -1, Lambda: LambdaFixed, Fixed: 0.5})
	checkLayout(t, "last pair", p, lay{{w(0, 1)}, {w(1, 0.5), w(2, 0.25), w(3, 0.125), w(4, 0.125)}})

	// LambdaCode: r = mean(row1)/(mean(row1)+mean(row2)) with
	// row1 = (0.5, 1, 0.9, 0.3, 0.3), row2 = (0.3, 0.9, 1, 0.6, 0.3).
	p, _ = PlanMKA(sim, 1, MKAOptions{Lambda: LambdaCode})
	m1, m2 := (0.5+1+0.9+0.3+0.3)/5, (0.3+0.9+1+0.6+0.3)/5
	lam := 1 / (1 + math.Exp(-m1/(m1+m2)))
	checkLayout(t, "code λ", p, lay{{w(0, 1)}, {w(1, lam), w(2, 1-lam)}, {w(3, 1)}, {w(4, 1)}})

	// CombineAverage: the fused row is 0.9·row1 + 0.1·row2, so
	// S(f,3) = 0.9·0.3 + 0.1·0.6 = 0.33 and S(0,f) = 0.9·0.5 + 0.1·0.3 = 0.48;
	// step 2 is still (3,4) = 0.8, then step 3 compares S(0,f)=0.48 with
	// S(f,g) = 0.8·S(f,3) + 0.2·S(f,4) = 0.8·0.33 + 0.2·0.3 = 0.324: (0,1).
	p, _ = PlanMKA(sim, 3, MKAOptions{Combine: CombineAverage})
	if st := p.Steps[2]; st.Blocks != [2]int{0, 1} || math.Abs(st.Similarity-0.48) > 1e-12 || math.Abs(st.Lambda-0.48) > 1e-12 {
		t.Errorf("average: step 3 = %+v, want 0+1 at S=λ=0.48", st)
	}
	accountedFor(t, p)

	// Protect 2: blocks 0 and 1 are never touched, so (1,2) is out.
	p, _ = PlanMKA(sim, 1, MKAOptions{Protect: 2})
	checkLayout(t, "protect", p, lay{{w(0, 1)}, {w(1, 1)}, {w(2, 1)}, {w(3, 0.8), w(4, 0.2)}})
	p, _ = PlanMKA(sim, 2, MKAOptions{Protect: 2})
	checkLayout(t, "protect 2", p, lay{{w(0, 1)}, {w(1, 1)}, {w(2, 0.3), w(3, 0.7*0.8), w(4, 0.7*0.2)}})

	// Errors.
	nan := testSim()
	nan.SetSym(1, 3, math.NaN())
	for _, tc := range []struct {
		name string
		sim  mat.Symmetric
		n    int
		opt  MKAOptions
		want error
	}{
		{"n=0", sim, 0, MKAOptions{}, ErrCount},
		{"n=L", sim, 5, MKAOptions{}, ErrCount},
		{"protect too many", sim, 2, MKAOptions{Protect: 3}, ErrCount},
		{"protect < 0", sim, 1, MKAOptions{Protect: -1}, ErrOption},
		{"order", sim, 1, MKAOptions{Order: 9}, ErrOption},
		{"lambda rule", sim, 1, MKAOptions{Lambda: 9}, ErrOption},
		{"fixed > 1", sim, 1, MKAOptions{Lambda: LambdaFixed, Fixed: 1.5}, ErrOption},
		{"combine", sim, 1, MKAOptions{Combine: 9}, ErrOption},
		{"threshold NaN", sim, 1, MKAOptions{Threshold: math.NaN()}, ErrOption},
		{"NaN sim", nan, 1, MKAOptions{}, ErrScore},
	} {
		if _, err := PlanMKA(tc.sim, tc.n, tc.opt); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestPlanMKARandom(t *testing.T) {
	r := newRand(41)
	for trial := 0; trial < 300; trial++ {
		l := 2 + r.IntN(40)
		sim := mat.NewSymDense(l, nil)
		for i := 0; i < l; i++ {
			for j := i; j < l; j++ {
				sim.SetSym(i, j, r.Float64())
			}
		}
		opt := MKAOptions{
			Order:   Order(r.IntN(2)),
			Lambda:  LambdaRule(r.IntN(3)),
			Fixed:   r.Float64(),
			Combine: Combine(r.IntN(2)),
			Protect: r.IntN(l - 1),
		}
		n := 1 + r.IntN(l-1-opt.Protect)
		p, err := PlanMKA(sim, n, opt)
		if err != nil {
			t.Fatalf("L=%d n=%d %+v: %v", l, n, opt, err)
		}
		if p.Removed() != n {
			t.Errorf("removed %d, want %d", p.Removed(), n)
		}
		accountedFor(t, p)
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
		for b := 0; b < opt.Protect; b++ {
			if len(p.Layout[b]) != 1 || p.Layout[b][0].Block != b {
				t.Errorf("protected block %d changed: %v", b, p.Layout[b])
			}
		}
	}
}

func TestPlanValidate(t *testing.T) {
	good, _ := PlanMKA(testSim(), 2, MKAOptions{})
	tamper := func(f func(p *Plan)) error {
		q, _ := NewPlan(good.Method, good.Original, append([]Step(nil), good.Steps...))
		f(q)
		return q.Validate()
	}
	for name, f := range map[string]func(p *Plan){
		"weight":       func(p *Plan) { p.Layout[1][0].W = 0.5 },
		"block":        func(p *Plan) { p.Layout[1][0].Block = 0 },
		"missing":      func(p *Plan) { p.Layout = p.Layout[:2] },
		"non-adjacent": func(p *Plan) { p.Steps[0].Blocks[1] = 3 },
		"lambda":       func(p *Plan) { p.Steps[0].Lambda = -0.1 },
		"range":        func(p *Plan) { p.Steps[1].Blocks = [2]int{3, 4} },
		"kind":         func(p *Plan) { p.Steps[0].Kind = 0 },
		"original":     func(p *Plan) { p.Original = 2 },
		"similarity":   func(p *Plan) { p.Steps[0].Similarity = math.Inf(1) },
	} {
		if err := tamper(f); !errors.Is(err, ErrPlan) {
			t.Errorf("%s: Validate = %v, want ErrPlan", name, err)
		}
	}
	if err := good.Validate(); err != nil {
		t.Error(err)
	}
}

func TestPlanString(t *testing.T) {
	p, _ := PlanMKA(testSim(), 2, MKAOptions{})
	want := `mka: 5 -> 3 blocks (2 removed)
  1. blk 1 + blk 2 -> 1 (λ=0.90, S=0.90)
  2. blk 2 + blk 3 -> 2 (λ=0.80, S=0.80)
  layout:
    out 1 = 0.900·blk 1 + 0.100·blk 2
    out 2 = 0.800·blk 3 + 0.200·blk 4`
	if got := p.String(); got != want {
		t.Errorf("String:\n%s\nwant:\n%s", got, want)
	}
	d, _ := PlanPruneBI([]float64{0.5, 0.1, 0.3, 0.2, 0.9, 0.8}, 2)
	want = `bi: 6 -> 4 blocks (2 removed)
  1. drop blk 3 (S=0.80)
  2. drop blk 1 (S=0.90)
  layout:
    out 1 = blk 2
    out 2..3 = blk 4..5`
	if got := d.String(); got != want {
		t.Errorf("String:\n%s\nwant:\n%s", got, want)
	}
}
