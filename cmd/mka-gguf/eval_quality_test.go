package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// evalJSON runs eval with --json and decodes its output.
func evalJSON(t *testing.T, args ...string) evalReport {
	t.Helper()
	args = append([]string{"-q", "eval"}, append(args, "--json", "--threads", "2")...)
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	var r evalReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	return r
}

// TestEvalKLD: against itself a model has KLD 0 and the same top token
// everywhere; against deep12 (same tokenizer) streaming and a saved base
// agree, and the PPLs are eval's own.
func TestEvalKLD(t *testing.T) {
	small, deep := shared.Model(t, "stories260K.gguf"), shared.Model(t, "tinystories-deep12.gguf")
	text := shared.Path(t, "data/tinystories-heldout.txt")
	win := []string{"--text", text, "--ctx", "128", "--windows", "12"}
	self := evalJSON(t, append([]string{small, "--base", small}, win...)...)
	// (ppl and tokens are Quality's own: the Summary's are shadowed in the JSON.)
	if s := self.Quality.Summary; s == nil || s.KLD > 1e-6 || s.SameTop != 100 || self.Quality.Tokens != 12*63 {
		t.Fatalf("self: %+v", s)
	}
	stream := evalJSON(t, append([]string{small, "--base", deep}, win...)...)
	// The PPL is at .quality.ppl with or without --base.
	plain := evalJSON(t, append([]string{small}, win...)...)
	if stream.Quality.Summary == nil || plain.Quality.Summary != nil || math.Abs(stream.Quality.PPL-plain.Quality.PPL) > 1e-9*plain.Quality.PPL {
		t.Fatalf("PPL with --base %+v, without %+v", stream.Quality, plain.Quality)
	}
	dir := t.TempDir()
	saved := filepath.Join(dir, "deep12.kld")
	sv := evalJSON(t, append([]string{deep, "--save-base", saved, "--base-top", "0"}, win...)...)
	if sv.Quality == nil || math.Abs(sv.Quality.PPL-stream.Quality.BasePPL) > 1e-6*sv.Quality.PPL {
		t.Fatalf("--save-base PPL %+v, base PPL when streaming %.6f", sv.Quality, stream.Quality.BasePPL)
	}
	fromFile := evalJSON(t, small, "--base-logits", saved)
	ff, st := fromFile.Quality.Summary, stream.Quality.Summary
	if ff == nil || math.Abs(ff.KLD-st.KLD) > 1e-6 || ff.SameTop != st.SameTop || ff.KLDP99 != st.KLDP99 {
		t.Fatalf("saved base %+v, streaming %+v", ff, st)
	}
	// The saved text is checked when --text is given again.
	other := filepath.Join(dir, "other.txt")
	os.WriteFile(other, readFile(t, text)[1000:], 0o644)
	stdout, stderr, code := run(t, "eval", small, "--base-logits", saved, "--text", other)
	wantOneLineError(t, stdout, stderr, code, saved, "not saved from")
	junk := filepath.Join(dir, "junk.kld")
	os.WriteFile(junk, []byte("junk"), 0o644)
	stdout, stderr, code = run(t, "eval", small, "--base-logits", junk)
	wantOneLineError(t, stdout, stderr, code, junk, "not a base")
	stdout, stderr, code = run(t, "eval", small, "--base", deep, "--base-logits", saved, "--text", text)
	wantOneLineError(t, stdout, stderr, code, "one of --base")
}

// TestEvalChoices: make-choices builds a cloze file from the held-out
// text, eval --choices scores it above chance, and bad task files give one
// line naming them.
func TestEvalChoices(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	cloze := filepath.Join(dir, "cloze.jsonl")
	stdout, stderr, code := run(t, "make-choices", shared.Path(t, "data/tinystories-heldout.txt"), "-o", cloze, "--tasks", "60")
	wantOK(t, []string{"make-choices"}, stdout, stderr, code)
	if n := strings.Count(string(readFile(t, cloze)), "\n"); n != 60 {
		t.Fatalf("%d tasks written", n)
	}
	stdout, stderr, code = run(t, "make-choices", shared.Path(t, "data/tinystories-heldout.txt"), "-o", cloze)
	wantOneLineError(t, stdout, stderr, code, cloze, "exists")
	r := evalJSON(t, model, "--choices", cloze)
	if c := r.Choice; c == nil || c.Tasks != 60 || c.AccNorm < 30 || math.Abs(c.Chance-25) > 1e-9 || c.AccErr <= 0 {
		t.Fatalf("choices: %+v", r.Choice)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"context":"a","endings":["b","c"],"label":5}`+"\n"), 0o644)
	stdout, stderr, code = run(t, "eval", model, "--choices", bad)
	wantOneLineError(t, stdout, stderr, code, bad, "label 5")
}
