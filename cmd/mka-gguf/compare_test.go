package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// TestCompare runs two baselines at one removal count from one calibration
// pass: the Markdown table, results.json (finite PPL above the original's,
// a KLD and same-top share against it, a cloze accuracy, smaller files,
// the right block counts) and the PNG plots must appear.
func TestCompare(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")
	calibText := shared.Path(t, "data/tinystories-train.txt")
	text := shared.Path(t, "data/tinystories-heldout.txt")
	dir := t.TempDir()
	stdout, stderr, code := run(t, "-q", "compare", model, "--calib", calibText, "--text", text,
		"--methods", "prune-reverse,prune-bi", "--align", "none,ls", "--remove", "1", "--samples", "16", "--ctx", "64",
		"--eval-ctx", "128", "--windows", "24", "--threads", "1", "--out", dir, "--choices", writeCloze(t, dir), "--tasks", "20")
	wantOK(t, []string{"compare"}, stdout, stderr, code)
	if !strings.Contains(stdout, "| prune-reverse |") || !strings.Contains(stdout, "| prune-bi |") ||
		!strings.Contains(stdout, "| prune-reverse --align ls |") || !strings.Contains(stdout, "| prune-bi --align ls |") {
		t.Fatalf("no Markdown table rows in:\n%s", stdout)
	}
	var res struct {
		Original struct {
			PPL     float64 `json:"ppl"`
			Bytes   int64   `json:"bytes"`
			KLD     float64 `json:"kld"`
			SameTop float64 `json:"same_top_pct"`
			AccNorm float64 `json:"acc_norm_pct"`
		} `json:"original"`
		Rows []struct {
			Method  string  `json:"method"`
			Removed int     `json:"removed"`
			Blocks  int     `json:"blocks"`
			File    string  `json:"output"`
			Bytes   int64   `json:"bytes"`
			PPL     float64 `json:"ppl"`
			KLD     float64 `json:"kld"`
			KLDErr  float64 `json:"kld_stderr"`
			SameTop float64 `json:"same_top_pct"`
			AccNorm float64 `json:"acc_norm_pct"`
		} `json:"results"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "results.json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 4 || !(res.Original.PPL > 1 && res.Original.PPL < 20) || res.Original.KLD != 0 || res.Original.SameTop != 100 || res.Original.AccNorm <= 0 {
		t.Fatalf("results: %+v", res)
	}
	ppl := map[string]float64{}
	for _, r := range res.Rows {
		ppl[r.Method] = r.PPL
		if r.Removed != 1 || r.Blocks != 4 || !(r.PPL > res.Original.PPL && r.PPL < 1e4) || r.Bytes >= res.Original.Bytes {
			t.Fatalf("row %+v (original PPL %.3f, %d bytes)", r, res.Original.PPL, res.Original.Bytes)
		}
		if !(r.KLD > 0.05 && r.KLDErr > 0 && r.KLDErr < r.KLD/5 && r.SameTop > 10 && r.SameTop < 100 && r.AccNorm > 0) {
			t.Fatalf("row %+v: want a KLD above 0 with a small error, same top below 100 %%, an accuracy", r)
		}
		if n := mtBlocks(t, r.File); n != 4 {
			t.Fatalf("%s has %d blocks", r.File, n)
		}
	}
	// Aligning the block before the dropped one helps on held-out text
	// (prune-reverse removes the last block, whose output goes through the
	// scale-invariant output norm: there the fit gains nothing, 13.06 vs
	// 13.01 here).
	for _, m := range []string{"prune-bi"} {
		if !(ppl[m+" --align ls"] < ppl[m]) {
			t.Errorf("%s: PPL %.3f aligned, %.3f without", m, ppl[m+" --align ls"], ppl[m])
		}
	}
	for _, f := range []string{"ppl.png", "kld.png", "accuracy.png"} {
		if png := readFile(t, filepath.Join(dir, f)); !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Fatalf("%s is not a PNG", f)
		}
	}
}

// writeCloze builds a cloze file from the held-out text in dir.
func writeCloze(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "cloze.jsonl")
	stdout, stderr, code := run(t, "make-choices", shared.Path(t, "data/tinystories-heldout.txt"), "-o", out, "--tasks", "20")
	wantOK(t, []string{"make-choices"}, stdout, stderr, code)
	return out
}
