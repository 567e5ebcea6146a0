package kld

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func logits(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(math.Log(v) + 3) // an offset softmax must ignore
	}
	return out
}

// TestClosedForm: p = (½, ¼, ¼) against q = (¼, ¼, ½) is
// ½·ln 2 + ¼·ln ½ = ¼·ln 2; keeping only p's top token, the partition
// {0}, {1, 2} gives ½·ln(½/¼) + ½·ln(½/¾), smaller, as a coarser
// partition must.
func TestClosedForm(t *testing.T) {
	var sc Scratch
	var base Dist
	FromLogits(&base, logits(0.5, 0.25, 0.25), 1, 0, &sc)
	tok := Score(&base, logits(0.25, 0.25, 0.5), 1, &sc)
	if want := 0.25 * math.Ln2; math.Abs(tok.KLD-want) > 1e-7 {
		t.Fatalf("KLD %.9f, want ¼·ln 2 = %.9f", tok.KLD, want)
	}
	if tok.SameTop || math.Abs(tok.NLL-math.Log(4)) > 1e-6 || math.Abs(tok.BaseNLL-math.Log(4)) > 1e-6 || math.Abs(tok.DP) > 1e-7 {
		t.Fatalf("token %+v: want different tops, both NLL ln 4, Δp 0", tok)
	}
	FromLogits(&base, logits(0.5, 0.25, 0.25), 1, 1, &sc)
	if len(base.IDs) != 1 || base.IDs[0] != 0 || math.Abs(base.Tail-math.Log(0.5)) > 1e-7 {
		t.Fatalf("top-1 distribution %+v", base)
	}
	tok = Score(&base, logits(0.25, 0.25, 0.5), 1, &sc)
	want := 0.5*math.Log(2) + 0.5*math.Log(0.5/0.75)
	if math.Abs(tok.KLD-want) > 1e-7 {
		t.Fatalf("top-1 KLD %.9f, want %.9f", tok.KLD, want)
	}
	for _, m := range sc.mark {
		if m {
			t.Fatal("Score left scratch marks set")
		}
	}
}

// TestTopKLowerBound: on random distributions, every top-K KLD is at most
// the full one, grows with K and equals it at K = vocabulary − 1 (one
// token in the tail is no coarsening).
func TestTopKLowerBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var sc Scratch
	for range 50 {
		n := 2 + r.IntN(60)
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()*3), float32(r.NormFloat64()*3)
		}
		a[r.IntN(n)] = a[0] // ties must not break top-K
		next := int32(r.IntN(n))
		var full, d Dist
		FromLogits(&full, a, next, 0, &sc)
		kf := Score(&full, b, next, &sc).KLD
		prev := -1.0
		for k := 1; k < n; k++ {
			FromLogits(&d, a, next, k, &sc)
			tk := Score(&d, b, next, &sc)
			if tk.KLD > kf+1e-6 || tk.KLD < prev-1e-6 {
				t.Fatalf("n %d, k %d: KLD %.6f, full %.6f, k−1 %.6f", n, k, tk.KLD, kf, prev)
			}
			if tk.SameTop != Score(&full, b, next, &sc).SameTop || tk.BaseNLL != -float64(full.Next) {
				t.Fatalf("n %d, k %d: top-K changed the same-top or NLL of the base", n, k)
			}
			prev = tk.KLD
		}
		if math.Abs(prev-kf) > 1e-5 {
			t.Fatalf("n %d: KLD at k = n−1 %.6f, full %.6f", n, prev, kf)
		}
	}
}

// TestTailMass checks Score's top-K KLD against the definition, the
// model's tail mass summed token by token, both where Score takes it as
// 1 − the kept mass and where that mass is too small for it (a model
// that puts almost everything on the base's kept tokens).
func TestTailMass(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var sc Scratch
	for _, peak := range []float32{0, 40} {
		for range 20 {
			n := 50 + r.IntN(500)
			a, b := make([]float32, n), make([]float32, n)
			for i := range a {
				a[i], b[i] = float32(r.NormFloat64()*2), float32(r.NormFloat64()*2)
			}
			var d Dist
			k := 1 + r.IntN(n/2)
			FromLogits(&d, a, 0, k, &sc)
			b[d.IDs[0]] += peak // the model's mass outside IDs: e^−40 with the peak
			mx := float64(slices.Max(b))
			var z float64
			for _, v := range b {
				z += math.Exp(float64(v) - mx)
			}
			lse := mx + math.Log(z)
			var want, tail float64
			kept := map[int32]bool{}
			for i, id := range d.IDs {
				lp := float64(d.LogP[i])
				want += math.Exp(lp) * (lp - (float64(b[id]) - lse))
				kept[id] = true
			}
			for i, v := range b {
				if !kept[int32(i)] {
					tail += math.Exp(float64(v) - lse)
				}
			}
			want += math.Exp(d.Tail) * (d.Tail - math.Log(tail))
			got := Score(&d, b, 0, &sc).KLD
			if math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
				t.Fatalf("peak %g, n %d, k %d (model tail %.3g): KLD %.12g, by definition %.12g", peak, n, k, tail, got, want)
			}
		}
	}
}

// TestSummaryStatistics checks the llama.cpp definitions on known values.
func TestSummaryStatistics(t *testing.T) {
	var a Accumulator
	for i := range 101 {
		a.Add(Token{KLD: float64(i) / 100, NLL: 2, BaseNLL: 1, DP: 0.1, SameTop: i%4 != 0})
	}
	s := a.Summary()
	if math.Abs(s.KLD-0.5) > 1e-9 || math.Abs(s.KLDMedian-0.5) > 1e-6 || math.Abs(s.KLDP90-0.9) > 1e-6 ||
		math.Abs(s.KLDP99-0.99) > 1e-6 || s.KLDMax != 1 || s.KLDMin != 0 {
		t.Fatalf("KLD statistics %+v", s)
	}
	// The sample standard error of 0, 0.01, …, 1: σ/√(n−1) with σ² = E[x²] − E[x]².
	if want := math.Sqrt((1.0/101*sumSq(101) - 0.25) / 100); math.Abs(s.KLDErr-want) > 1e-9 {
		t.Fatalf("KLD stderr %g, want %g", s.KLDErr, want)
	}
	if math.Abs(s.LnPPLRatio-1) > 1e-12 || math.Abs(s.PPL-math.E*math.E) > 1e-9 || math.Abs(s.BasePPL-math.E) > 1e-9 {
		t.Fatalf("PPL statistics %+v", s)
	}
	if math.Abs(s.RMSDP-10) > 1e-9 || math.Abs(s.SameTop-100*75.0/101) > 1e-9 {
		t.Fatalf("RMS Δp %g %%, same top %g %%", s.RMSDP, s.SameTop)
	}
}

func sumSq(n int) float64 {
	var s float64
	for i := range n {
		s += float64(i) * float64(i) / 1e4
	}
	return s
}

// windows cuts the held-out text as llama.cpp's perplexity tool does.
func windows(t *testing.T, m *cgo.Model, n, count int) [][]int32 {
	t.Helper()
	text, err := os.ReadFile(shared.Path(t, "data/tinystories-heldout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.Tokenize(string(text), true, false)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := runner.Chunk(toks, n, count, m.BOS())
	if err != nil {
		t.Fatal(err)
	}
	return chunks
}

func load(t *testing.T, name string) *cgo.Model {
	t.Helper()
	m, err := cgo.LoadModel(shared.Model(t, name), cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestSelfIsZero: a model against itself has KLD 0, the same top token
// everywhere and equal perplexities.
func TestSelfIsZero(t *testing.T) {
	m := load(t, "stories260K.gguf")
	chunks := windows(t, m, 128, 8)
	s, err := Compare(m, m, chunks, Options{First: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if s.Tokens != 8*63 || math.Abs(s.KLD) > 1e-6 || s.KLDMax > 1e-5 || s.SameTop != 100 || math.Abs(s.LnPPLRatio) > 1e-6 || s.RMSDP > 1e-4 {
		t.Fatalf("model against itself: %+v", s)
	}
}

// TestStreamingMatchesSavedBase: deep12 against stories260K (same
// tokenizer) streamed side by side and through a saved base file agree to
// rounding; a top-64 base file gives a KLD at most the full one and close
// to it, with the same perplexities and same-top share; an in-memory
// Reference gives what the file gives (to rounding).
func TestStreamingMatchesSavedBase(t *testing.T) {
	base, model := load(t, "tinystories-deep12.gguf"), load(t, "stories260K.gguf")
	chunks := windows(t, base, 128, 10)
	opt := Options{First: 64, Threads: 2}
	stream, err := Compare(base, model, chunks, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !(stream.KLD > 0.05 && stream.SameTop < 95 && stream.SameTop > 20) {
		t.Fatalf("two different models: %+v", stream)
	}
	for _, k := range []int{0, 64} {
		path := filepath.Join(t.TempDir(), "base.kld")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		o := opt
		o.TopK = k
		ppl, _, err := Save(f, base, chunks, o)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if math.Abs(ppl-stream.BasePPL) > 1e-6*ppl {
			t.Fatalf("Save: base PPL %.6f, streaming %.6f", ppl, stream.BasePPL)
		}
		bf, err := OpenBase(path)
		if err != nil {
			t.Fatal(err)
		}
		saved, err := CompareFile(bf, model, Options{Threads: 2})
		bf.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("top-k %d: KLD %.6f (streaming %.6f), same top %.3f %%", k, saved.KLD, stream.KLD, saved.SameTop)
		// The same distributions kept in memory (merge's quality check).
		ref, err := NewReference(base, chunks, o)
		if err != nil {
			t.Fatal(err)
		}
		mem, err := CompareReference(ref, model, Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if mem.Tokens != saved.Tokens || math.Abs(mem.KLD-saved.KLD) > 1e-9*saved.KLD || mem.SameTop != saved.SameTop || mem.PPL != saved.PPL || mem.TopK != saved.TopK {
			t.Fatalf("top-k %d: in-memory reference %+v, saved base %+v", k, mem, saved)
		}
		if saved.Tokens != stream.Tokens || saved.SameTop != stream.SameTop ||
			math.Abs(saved.PPL-stream.PPL) > 1e-9*saved.PPL || math.Abs(saved.BasePPL-stream.BasePPL) > 1e-6*saved.PPL {
			t.Fatalf("top-k %d: saved %+v, streaming %+v", k, saved, stream)
		}
		tol := 1e-6
		if k > 0 {
			tol = 0.02 * stream.KLD
		}
		if math.Abs(saved.KLD-stream.KLD) > tol || saved.KLD > stream.KLD+1e-6 {
			t.Fatalf("top-k %d: KLD %.6f, streaming %.6f", k, saved.KLD, stream.KLD)
		}
	}
}

// TestBadBaseFile: a truncated or foreign file is refused with its name.
func TestBadBaseFile(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.kld")
	os.WriteFile(junk, []byte("hello world, this is not it"), 0o644)
	if _, err := OpenBase(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Fatalf("junk file: %v", err)
	}
	m := load(t, "stories260K.gguf")
	chunks := windows(t, m, 64, 2)
	path := filepath.Join(dir, "b.kld")
	f, _ := os.Create(path)
	if _, _, err := Save(f, m, chunks, Options{First: 32, Threads: 2}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(path)
	os.Truncate(path, st.Size()-3)
	if _, err := OpenBase(path); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated file: %v", err)
	}
}
