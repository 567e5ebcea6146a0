package choice

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func TestSentences(t *testing.T) {
	got := Sentences("Tom said, \"Hi!\" Mia smiled.  She was  happy. Then? 3.5 apples. \"Go!\" she said.")
	want := []string{`Tom said, "Hi!"`, "Mia smiled.", "She was happy.", "Then? 3.5 apples.", `"Go!" she said.`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// TestDecideNormalisation: the right ending is long and fluent (−0.5 nats
// per token over 12 tokens), a wrong one short and unlikely (−2 nats per
// token over 2 tokens). The summed log-probability prefers the short one
// only because it has fewer tokens; the mean per token picks the right one.
func TestDecideNormalisation(t *testing.T) {
	pred, norm := Decide([]float64{-6, -4}, []int{12, 2})
	if pred != 1 || norm != 0 {
		t.Fatalf("pred %d, pred_norm %d: want 1 (sum) and 0 (mean)", pred, norm)
	}
}

func TestLoadFormats(t *testing.T) {
	dir := t.TempDir()
	jl := filepath.Join(dir, "t.jsonl")
	os.WriteFile(jl, []byte(`{"context":"A","endings":["b","c"],"label":1}`+"\n\n"+`{"context":"D","endings":["e","f","g"],"label":0}`+"\n"), 0o644)
	tasks, err := Load(jl)
	if err != nil || len(tasks) != 2 || tasks[0].Label != 1 || len(tasks[1].Endings) != 3 {
		t.Fatalf("JSONL: %v %+v", err, tasks)
	}
	hs := filepath.Join(dir, "hs.txt")
	os.WriteFile(hs, []byte("Ctx one\n2\na\nb\nc\nd\nCtx two\n0\ne\nf\ng\nh\n"), 0o644)
	tasks, err = Load(hs)
	if err != nil || len(tasks) != 2 || tasks[0].Label != 2 || tasks[1].Endings[3] != "h" {
		t.Fatalf("HellaSwag: %v %+v", err, tasks)
	}
	for name, body := range map[string]string{
		"label.jsonl": `{"context":"A","endings":["b","c"],"label":2}`,
		"one.jsonl":   `{"context":"A","endings":["b"],"label":0}`,
		"json.jsonl":  `{"context":"A","endings":["b","c"],"label":0`,
		"hs5.txt":     "a\n0\nb\nc\nd\n",
		"hslabel.txt": "a\nx\nb\nc\nd\ne\n",
		"empty.jsonl": "\n\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
}

func TestBuildCloze(t *testing.T) {
	text, err := os.ReadFile(shared.Path(t, "data/tinystories-heldout.txt"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := BuildCloze(string(text), ClozeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := BuildCloze(string(text), ClozeOptions{})
	c, _ := BuildCloze(string(text), ClozeOptions{Seed: 2})
	if len(a) < 100 || !slices.EqualFunc(a, b, taskEqual) || slices.EqualFunc(a, c, taskEqual) {
		t.Fatalf("%d tasks; same seed equal: %v, other seed equal: %v", len(a), slices.EqualFunc(a, b, taskEqual), slices.EqualFunc(a, c, taskEqual))
	}
	labels := make([]int, 4)
	for _, tk := range a {
		if len(tk.Endings) != 4 {
			t.Fatalf("task %+v", tk)
		}
		labels[tk.Label]++
		// The right ending follows the context in the text.
		if !strings.Contains(strings.Join(strings.Fields(string(text)), " "), tk.Context+" "+tk.Endings[tk.Label]) {
			t.Fatalf("right ending does not follow the context: %+v", tk)
		}
	}
	for l, n := range labels {
		if n < len(a)/8 {
			t.Fatalf("label %d only %d times of %d", l, n, len(a))
		}
	}
}

func taskEqual(a, b Task) bool {
	return a.Context == b.Context && a.Label == b.Label && slices.Equal(a.Endings, b.Endings)
}

// TestSharedPrefixMatchesAlone: scoring with the shared context decoded
// once (many tasks per decode, or one) gives the log-probabilities of
// decoding every context + ending alone as one sequence.
func TestSharedPrefixMatchesAlone(t *testing.T) {
	m, err := cgo.LoadModel(shared.Model(t, "stories260K.gguf"), cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	text, _ := os.ReadFile(shared.Path(t, "data/tinystories-heldout.txt"))
	tasks, err := BuildCloze(string(text), ClozeOptions{MaxTasks: 6})
	if err != nil {
		t.Fatal(err)
	}
	many, err := Score(m, tasks, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	one, err := Score(m, tasks, Options{Threads: 2, Tokens: 1}) // one task per decode
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range tasks {
		for e, end := range tk.Endings {
			toks, _ := m.Tokenize(Join(tk.Context, end), true, false)
			ctxToks, _ := m.Tokenize(tk.Context, true, false)
			var lp float64
			n := len(toks) - many.Scores[i].Tokens[e]
			if n > len(ctxToks) || n < 1 {
				t.Fatalf("task %d ending %d: %d scored tokens of %d, context has %d", i, e, many.Scores[i].Tokens[e], len(toks), len(ctxToks))
			}
			_, err := runner.Run(m, [][]int32{toks}, runner.Options{Threads: 2, Logits: true}, func(d *runner.Decoded) error {
				for j := n; j < len(toks); j++ {
					lp -= ppl.NLL(d.Logits(0, j-1), toks[j])
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Batched and alone, attention's matrix products sum in a
			// different order: float32 rounding, 1e-4 of the log-probability
			// (a wrong mask or position is off by whole nats).
			tol := 1e-4 * max(1, math.Abs(lp))
			if math.Abs(lp-many.Scores[i].LogProb[e]) > tol || math.Abs(lp-one.Scores[i].LogProb[e]) > tol {
				t.Fatalf("task %d ending %d: alone %.5f, batched %.5f, one per decode %.5f", i, e, lp, many.Scores[i].LogProb[e], one.Scores[i].LogProb[e])
			}
		}
	}
	if many.Acc != one.Acc || many.Tasks != 6 || math.Abs(many.Chance-25) > 1e-9 {
		t.Fatalf("results %+v / %+v", many, one)
	}
}

// TestLengthOnlyEndings: endings that differ only by length, each one the
// one before it continued by repeating the sentence. The summed
// log-probability always prefers the shortest (every extra token lowers
// it), so with the longest as the label raw accuracy is 0 whatever the
// model; the per-token mean falls only where the continuation is less
// predictable, and where the model copies the repeated sentence it picks
// the longest.
func TestLengthOnlyEndings(t *testing.T) {
	m, err := cgo.LoadModel(shared.Model(t, "stories260K.gguf"), cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tasks := []Task{
		{Context: "Once upon a time, there was a little girl named Lily. She loved to play", Label: 2,
			Endings: []string{"outside.", "outside. She loved to play outside.", "outside. She loved to play outside. She loved to play outside."}},
		{Context: "Tom had a red ball. He liked to throw", Label: 2,
			Endings: []string{"it.", "it. He liked to throw it.", "it. He liked to throw it. He liked to throw it."}},
	}
	r, err := Score(m, tasks, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range r.Scores {
		t.Logf("task %d: sum %.2f / %.2f / %.2f, mean %.3f / %.3f / %.3f", i, s.LogProb[0], s.LogProb[1], s.LogProb[2],
			s.LogProb[0]/float64(s.Tokens[0]), s.LogProb[1]/float64(s.Tokens[1]), s.LogProb[2]/float64(s.Tokens[2]))
		if s.Pred != 0 || !(s.Tokens[0] < s.Tokens[1] && s.Tokens[1] < s.Tokens[2]) {
			t.Fatalf("task %d: raw picks %d, tokens %v", i, s.Pred, s.Tokens)
		}
	}
	if r.Acc != 0 || r.Scores[0].PredNorm == 0 && r.Scores[1].PredNorm == 0 {
		t.Fatalf("raw accuracy %.0f %%, normalised picks %d and %d: want 0 %% and a longer ending", r.Acc, r.Scores[0].PredNorm, r.Scores[1].PredNorm)
	}
}
