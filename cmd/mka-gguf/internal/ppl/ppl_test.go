package ppl

import (
	"math"
	"os"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func TestNLLMatchesSoftmax(t *testing.T) {
	logits := []float32{1, 2, 3, 0.5}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v))
	}
	want := -math.Log(math.Exp(3) / z)
	if got := NLL(logits, 2); math.Abs(got-want) > 1e-12 {
		t.Fatalf("NLL = %g, want %g", got, want)
	}
	// Large logits must not overflow.
	if got := NLL([]float32{1000, 0}, 0); math.IsInf(got, 0) || math.IsNaN(got) || got > 1e-6 {
		t.Fatalf("NLL of a dominant logit = %g", got)
	}
}

// TestNLLOfAVocabularyRow checks NLL against the exact softmax of a
// vocabulary-sized row within 1e-12.
func TestNLLOfAVocabularyRow(t *testing.T) {
	const vocab = 5000
	row := make([]float32, vocab)
	for v := range row {
		row[v] = float32(math.Sin(float64(3*vocab+v))) * 12
	}
	next := int32((3 * 977) % vocab)
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v))
	}
	want := math.Log(z) - float64(row[next])
	if got := NLL(row, next); math.Abs(got-want) > 1e-12 {
		t.Errorf("NLL = %.15g, exact %.15g", got, want)
	}
}

// TestStoriesPerplexity compares with llama.cpp's own perplexity tool on the
// held-out text (n_ctx 256): 5.74 for stories260K and 6.24 for deep12
// (../shared/models/README.md).
func TestStoriesPerplexity(t *testing.T) {
	text, err := os.ReadFile(shared.Path(t, "data/tinystories-heldout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		model string
		want  float64
	}{{"stories260K.gguf", 5.74}, {"tinystories-deep12.gguf", 6.24}} {
		m, err := cgo.LoadModel(shared.Model(t, tc.model), cgo.ModelParams{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := Measure(m, string(text), Options{Ctx: 256, Threads: 2})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: PPL %.4f ± %.4f over %d windows, %.0f tok/s", tc.model, r.PPL, r.StdErr, r.Windows, r.TokPerSec)
		if math.Abs(r.PPL-tc.want) > 0.01 {
			t.Errorf("%s: PPL %.4f, llama.cpp's perplexity tool gives %.2f", tc.model, r.PPL, tc.want)
		}
		if r.StdErr <= 0 || r.StdErr > r.PPL/10 {
			t.Errorf("%s: implausible standard error %g", tc.model, r.StdErr)
		}
		if r.Scored != r.Windows*(256-1-128) {
			t.Errorf("scored %d tokens, want %d", r.Scored, r.Windows*(256-1-128))
		}
	}
}
