package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// TestUnencodableText runs every command that tokenizes text on a model
// whose vocabulary has no byte fallback, with text holding a character
// outside it (llama.cpp's tokenizer throws std::out_of_range there, which
// used to abort the process with a Go stack dump): exit status 1, one line
// naming the text file, the character, its offset and the cause, and no
// file created or changed.
func TestUnencodableText(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "nobytes.gguf")
	cfg := synth.Tiny()
	cfg.NoByteFallback = true
	if err := synth.Write(model, cfg); err != nil {
		t.Fatal(err)
	}
	// Every sample holds an é at byte 58 of the sample, so the error names
	// the same offset whether the whole file is tokenized (eval) or any
	// sample of it (calibration).
	cafe := filepath.Join(dir, "cafe.txt")
	ascii := filepath.Join(dir, "ascii.txt")
	sample := "Once upon a time, a girl named Lily went to the little café with her mom. They had cake.\n\n"
	other := "Once upon a time, a boy named Tom went to the park with his dog. They played all day long.\n\n"
	if err := os.WriteFile(cafe, []byte(strings.Repeat(sample, 50)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ascii, []byte(strings.Repeat(other, 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	const off = "byte offset 58"
	if strings.Index(sample, "é") != 58 {
		t.Fatalf("é is at %d", strings.Index(sample, "é"))
	}
	out := func(name string) string { return filepath.Join(dir, name) }
	small := []string{"--samples", "16", "--ctx", "64"}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"eval", []string{"eval", model, "--text", cafe}},
		{"merge", []string{"merge", model, out("merged.gguf"), "--calib", cafe, "--report", out("r.json")}},
		{"merge prune-bi", []string{"merge", model, out("merged.gguf"), "--method", "prune-bi", "--calib", cafe}},
		{"merge quant", []string{"merge", model, out("merged.gguf"), "--calib", cafe, "--quant", "Q8_0"}},
		{"analyze", []string{"analyze", model, "--calib", cafe, "--json-file", out("a.json"), "--heatmap", out("a.png")}},
		{"imatrix", []string{"imatrix", model, "--calib", cafe, "-o", out("im.gguf")}},
		{"compare calib", []string{"compare", model, "--text", ascii, "--calib", cafe, "--out", out("cmp")}},
		// The evaluation text is tokenized after the calibration, whose
		// progress --quiet turns off.
		{"compare text", append([]string{"--quiet", "compare", model, "--text", cafe, "--calib", ascii, "--out", out("cmp")}, small...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, dir)
			stdout, stderr, code := run(t, c.args...)
			wantOneLineError(t, stdout, stderr, code, cafe+": ", "cannot encode U+00E9 'é' at "+off, "the vocabulary of "+model, "no byte fallback")
			after := snapshot(t, dir)
			if !maps.Equal(before, after) {
				t.Errorf("files before %v, after %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
			}
		})
	}
}
