package main

// Issue 27 item 3: the controls a release job asks for: --max-kld (a CI
// gate), --blocks, --plan, --target-size, --imatrix in merge, llama.cpp's
// long flag names, general.name and quantize.imatrix.* in OUT.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// quickCalib are calibration flags that keep a merge of stories260K short.
func quickCalib(t *testing.T) []string {
	return []string{"--calib", shared.Path(t, "data/tinystories-train.txt"), "--samples", "16", "--ctx", "64", "--threads", "2"}
}

// mergeReport runs merge with --json and decodes its report.
func mergeReport(t *testing.T, wantCode int, args ...string) (map[string]any, string) {
	t.Helper()
	args = append(append([]string{"merge"}, args...), "--json")
	stdout, stderr, code := run(t, args...)
	if code != wantCode {
		t.Fatalf("mka-gguf %s: exit code %d, want %d\nstderr:\n%s", strings.Join(args, " "), code, wantCode, stderr)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout)
	}
	return r, stderr
}

// removed is a report's removed_blocks.
func removed(r map[string]any) []int {
	var out []int
	for _, b := range list(r["removed_blocks"]) {
		out = append(out, int(num(b)))
	}
	return out
}

func TestMaxKLDGate(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	r, stderr := mergeReport(t, 3, append([]string{in, out, "--blocks", "3", "--max-kld", "0.001"}, quickCalib(t)...)...)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "quality gate failed") || !strings.Contains(last, "--max-kld 0.001") {
		t.Errorf("last stderr line %q does not name the failed gate", last)
	}
	g, _ := r["quality_gate"].(map[string]any)
	if g == nil || g["passed"] != false || r["output"] != nil {
		t.Errorf("quality_gate %v, output %v: want a failed gate and no output", r["quality_gate"], r["output"])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the failed gate left %d files (want none, no OUT)", len(entries))
	}
	r, _ = mergeReport(t, 0, append([]string{in, out, "--blocks", "3", "--max-kld", "50"}, quickCalib(t)...)...)
	if g, _ := r["quality_gate"].(map[string]any); g == nil || g["passed"] != true || r["output"] != out {
		t.Errorf("quality_gate %v, output %v: want a passed gate and OUT", r["quality_gate"], r["output"])
	}
}

// TestPlanReuse: a --dry-run report given to --plan removes the same
// blocks without a search, and OUT's general.name says how many went.
func TestPlanReuse(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.json")
	dry, _ := mergeReport(t, 0, append([]string{in, filepath.Join(dir, "x.gguf"), "--dry-run", "--method", "prune-bi", "--align", "none", "-n", "2", "--json-file", plan}, quickCalib(t)...)...)
	out := filepath.Join(dir, "out.gguf")
	r, stderr := mergeReport(t, 0, append([]string{in, out, "--plan", plan}, quickCalib(t)...)...)
	if want, got := removed(dry), removed(r); len(want) != 2 || !slices.Equal(want, got) {
		t.Errorf("--plan removed %v, the dry run planned %v", got, want)
	}
	for _, phase := range []string{"calibrate", "search"} {
		if strings.Contains(stderr, "] "+phase) {
			t.Errorf("--plan ran a %s phase:\n%s", phase, stderr)
		}
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if name, _ := f.String("general.name"); !strings.HasSuffix(name, "(mka -2)") {
		t.Errorf("general.name %q, want it to end in (mka -2)", name)
	}
	// A plan for another model is refused before work.
	other := filepath.Join(dir, "other.gguf")
	copyFile(t, in, other, 0o644)
	if fh, err := os.OpenFile(other, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fh.Write(make([]byte, 32)) // same blocks, another SHA-256
		fh.Close()
	}
	stdout, stderr, code := run(t, "merge", other, filepath.Join(dir, "o2.gguf"), "--plan", plan)
	wantOneLineError(t, stdout, stderr, code, plan, "another model", other)
}

// TestMergeImatrixFile: --imatrix FILE quantizes with that matrix and OUT
// records llama-quantize's quantize.imatrix.* keys.
func TestMergeImatrixFile(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	train := shared.Path(t, "data/tinystories-train.txt")
	dir := t.TempDir()
	im := filepath.Join(dir, "im.gguf")
	args := []string{"-q", "imatrix", in, "-o", im, "--calib", train, "--samples", "4", "--ctx", "64"}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	out := filepath.Join(dir, "out.gguf")
	r, _ := mergeReport(t, 0, append([]string{in, out, "--blocks", "3", "--quant", "Q4_K_M", "--imatrix", im}, quickCalib(t)...)...)
	if r["imatrix"] != im || r["quant"] != "Q4_K_M" {
		t.Errorf("imatrix %v, quant %v; want %s, Q4_K_M", r["imatrix"], r["quant"], im)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, _ := f.String("quantize.imatrix.file")
	dataset, _ := f.String("quantize.imatrix.dataset")
	entries, _ := f.Uint("quantize.imatrix.entries_count")
	chunks, _ := f.Uint("quantize.imatrix.chunks_count")
	// 4 blocks of 7 matrices and output.weight: the removed block's are left out.
	if file != im || dataset != train || entries != 4*7+1 || chunks != 4 {
		t.Errorf("quantize.imatrix.* = file %q, dataset %q, entries %d, chunks %d; want %s, %s, 29, 4", file, dataset, entries, chunks, im, train)
	}
}

// TestTargetSize: the fewest blocks are removed that make OUT fit.
func TestTargetSize(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	r, _ := mergeReport(t, 0, append([]string{in, out, "--target-size", "300KiB", "--quant", "Q8_0", "--imatrix-from", "none",
		"--method", "prune-reverse", "--align", "none"}, quickCalib(t)...)...)
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 300<<10 || num(r["blocks_after"]) != 3 {
		t.Errorf("OUT %d bytes with %v blocks; want ≤ 300 KiB with 3 (Q8_0 keeps 4 blocks at 312 KiB)", st.Size(), r["blocks_after"])
	}
	stdout, stderr, code := run(t, "merge", in, filepath.Join(dir, "o2.gguf"), "--target-size", "10KiB")
	wantOneLineError(t, stdout, stderr, code, "--target-size 10.0 KiB cannot be reached", "--quant")
}

// TestLlamaCppFlagNames: llama.cpp's long names mean the same as ours.
func TestLlamaCppFlagNames(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	text := shared.Path(t, "data/tinystories-heldout.txt")
	ours := []string{"-q", "eval", in, "--text", text, "--ctx", "64", "--windows", "3", "-t", "1", "--gpu-layers", "0", "--json"}
	theirs := []string{"-q", "eval", in, "--file", text, "--ctx-size", "64", "--windows", "3", "--threads", "1", "--n-gpu-layers", "0", "--json"}
	var ppl [2]float64
	for i, args := range [][]string{ours, theirs} {
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
		var r evalReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Quality == nil || r.Ctx != 64 {
			t.Fatalf("%v: %s", err, stdout)
		}
		ppl[i] = r.Quality.PPL
	}
	if ppl[0] != ppl[1] {
		t.Errorf("PPL %g with our names, %g with llama.cpp's", ppl[0], ppl[1])
	}
}

// TestPredictedSize: OUT's size predicted from IN's metadata (the disk
// check's, --target-size's and the dry run's) is the written size within
// the metadata slack, quantized or not.
func TestPredictedSize(t *testing.T) {
	in := shared.Model(t, "stories15M-f16.gguf")
	dir := t.TempDir()
	for _, quant := range [][]string{nil, {"--quant", "Q4_K_M", "--imatrix-from", "none"}, {"--quant", "Q5_0", "--imatrix-from", "none"}} {
		out := filepath.Join(dir, "out.gguf")
		args := append([]string{in, out, "--force", "--method", "prune-reverse", "--align", "none", "-n", "2", "--no-check-quality", "--no-verify"}, quant...)
		r, _ := mergeReport(t, 0, args...)
		pred, got := num(r["predicted_bytes"]), num(r["bytes_after"])
		if got <= 0 || pred < got || pred > got+32<<10 {
			t.Errorf("%v: predicted %.0f bytes, wrote %.0f: want the written size to at most 32 KiB more", quant, pred, got)
		}
	}
}
