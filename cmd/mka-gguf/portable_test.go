package main

// Tests of the portable (release) build: a baseline x86-64 binary that
// loads the best ggml CPU variant shipped beside it. make test builds it
// (make portable) and passes its path in MKA_PORTABLE_BIN.

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/simd"
)

// portableBin returns the portable binary from MKA_PORTABLE_BIN. It skips
// the test when that is unset, except under CI=true where it fails.
func portableBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("MKA_PORTABLE_BIN")
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("MKA_PORTABLE_BIN is not set (CI=true): run the suite with make test, which builds the portable binary")
		}
		t.Skip("MKA_PORTABLE_BIN not set (make test builds the portable binary and sets it)")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("MKA_PORTABLE_BIN: %v", err)
	}
	return p
}

// TestPortableChoosesBestVariant checks the Go-side choice (cpuid) against
// ggml's own score of every shipped library: the same variants are
// runnable, they rank the same, and the one loaded is ggml's best.
func TestPortableChoosesBestVariant(t *testing.T) {
	pb := portableBin(t)
	args := []string{"env", "--json", "--ggml-scores"}
	stdout, stderr, code := runBin(t, pb, args...)
	wantOK(t, args, stdout, stderr, code)
	var r envReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("env --json: %v\n%s", err, stdout)
	}
	var names []string
	for _, v := range simd.CPUVariants() {
		names = append(names, v.Name)
	}
	slices.Sort(names)
	if !slices.Equal(r.Backends.Shipped, names) {
		t.Fatalf("shipped variants %v, want every variant %v", r.Backends.Shipped, names)
	}
	best, bestScore := simd.Builtin, 0
	for _, name := range names {
		v, _ := simd.LookupCPUVariant(name)
		got := r.GGMLScores[name]
		runs := len(v.Missing()) == 0
		if runs != (got > 0) {
			t.Errorf("%s: cpuid says runnable=%v (missing %v), ggml's score is %d", name, runs, v.Missing(), got)
		}
		if got > 0 && got != v.Score() {
			t.Errorf("%s: Go score %d, ggml score %d (feature tables differ)", name, v.Score(), got)
		}
		if got > bestScore {
			best, bestScore = name, got
		}
	}
	if r.Backends.CPU != best {
		t.Errorf("loaded CPU variant %q (%s), ggml's best is %q (score %d)", r.Backends.CPU, r.Backends.Reason, best, bestScore)
	}
	if len(r.Devices) != 1 || r.Devices[0].Type != "cpu" {
		t.Errorf("devices %+v, want exactly one CPU device (the built-in one unloaded)", r.Devices)
	}
	t.Logf("chose %s: %s", r.Backends.CPU, r.Backends.Reason)
}

// TestPortableVariantsAgree runs evaluation and calibration with the best
// variant, the baseline code and haswell, and compares them with each
// other and with the native build: the variants must change speed only.
func TestPortableVariantsAgree(t *testing.T) {
	pb := portableBin(t)
	model := shared.Model(t, "tinystories-deep12.gguf")
	text := shared.Path(t, "data/tinystories-heldout.txt")
	calibText := shared.Path(t, "data/tinystories-train.txt")
	dir := t.TempDir()

	type result struct {
		ppl  float64
		npib [][]float64
	}
	measure := func(name, binary string, pre ...string) result {
		t.Helper()
		args := append(slices.Clone(pre), "eval", model, "--text", text, "--ctx", "128", "--windows", "8", "--json")
		stdout, stderr, code := runBin(t, binary, args...)
		wantOK(t, args, stdout, stderr, code)
		var e struct {
			Quality struct {
				PPL float64 `json:"ppl"`
			} `json:"quality"`
		}
		if err := json.Unmarshal([]byte(stdout), &e); err != nil || !(e.Quality.PPL > 1) {
			t.Fatalf("%s: eval --json: %v (quality.ppl %v)", name, err, e.Quality.PPL)
		}
		out := filepath.Join(dir, name+".json")
		args = append(slices.Clone(pre), "-q", "analyze", model, "--calib", calibText, "--samples", "16", "--ctx", "64", "--json-file", out)
		stdout, stderr, code = runBin(t, binary, args...)
		wantOK(t, args, stdout, stderr, code)
		b := readFile(t, out)
		var a analyzeReport
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("%s: analyze --json: %v", name, err)
		}
		return result{e.Quality.PPL, a.Analysis.NPIB}
	}
	ref := measure("native", bin)
	runs := map[string]result{
		"auto":    measure("auto", pb),
		"builtin": measure("builtin", pb, "--cpu-variant", "builtin"),
	}
	if v, _ := simd.LookupCPUVariant("haswell"); len(v.Missing()) == 0 {
		runs["haswell"] = measure("haswell", pb, "--cpu-variant", "haswell")
	}
	for name, r := range runs {
		if d := math.Abs(r.ppl-ref.ppl) / ref.ppl; d > 1e-4 || math.IsNaN(r.ppl) {
			t.Errorf("%s: PPL %.6f, native build %.6f (relative difference %.2g > 1e-4)", name, r.ppl, ref.ppl, d)
		}
		if len(r.npib) != len(ref.npib) {
			t.Fatalf("%s: NPIB matrix %d×, native %d×", name, len(r.npib), len(ref.npib))
		}
		// NPIB goes through k-nearest-neighbour graphs: float32 rounding
		// of the kernels (SIMD or not) may swap a neighbour and move a
		// block's row by about 0.01. A wrong kernel moves it by far more.
		for i := range ref.npib {
			for j := range ref.npib[i] {
				if d := math.Abs(r.npib[i][j] - ref.npib[i][j]); d > 0.03 {
					t.Errorf("%s: NPIB[%d][%d] = %.5f, native %.5f", name, i, j, r.npib[i][j], ref.npib[i][j])
				}
			}
		}
		t.Logf("%-8s PPL %.6f (native %.6f)", name, r.ppl, ref.ppl)
	}
}

// TestPortableBadVariant checks that a variant that is unknown, or not
// shipped beside the binary, is refused with one line.
func TestPortableBadVariant(t *testing.T) {
	pb := portableBin(t)
	stdout, stderr, code := runBin(t, pb, "--cpu-variant", "pentium", "env")
	wantOneLineError(t, stdout, stderr, code, `cpu variant "pentium": unknown`)
	// The native binary ships no variants.
	stdout, stderr, code = run(t, "--cpu-variant", "haswell", "env")
	wantOneLineError(t, stdout, stderr, code, `cpu variant "haswell"`, "not installed")
	t.Setenv(simd.CPUVariantEnv, "sse42")
	stdout, stderr, code = run(t, "env")
	wantOneLineError(t, stdout, stderr, code, `cpu variant "sse42"`)
}

// TestPortableFallback installs the portable binary beside a broken zen4
// library and a good haswell one: the broken one is skipped with the
// loader's reason and the next best loads; with no library at all the
// built-in code runs; forcing the broken one fails with one line.
func TestPortableFallback(t *testing.T) {
	pb := portableBin(t)
	if v, _ := simd.LookupCPUVariant("zen4"); len(v.Missing()) > 0 {
		t.Skip("needs a CPU that runs the zen4 variant")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "mka-gguf")
	copyFile(t, pb, exe, 0o755)
	copyFile(t, filepath.Join(filepath.Dir(pb), "libggml-cpu-haswell.so"), filepath.Join(dir, "libggml-cpu-haswell.so"), 0o644)
	if err := os.WriteFile(filepath.Join(dir, "libggml-cpu-zen4.so"), []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(args ...string) envReport {
		t.Helper()
		args = append(args, "env", "--json")
		stdout, stderr, code := runBin(t, exe, args...)
		wantOK(t, args, stdout, stderr, code)
		var r envReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("env --json: %v", err)
		}
		return r
	}
	r := env()
	if r.Backends.CPU != "haswell" || !strings.Contains(r.Backends.Skipped["zen4"], "failed to load") {
		t.Errorf("with a broken zen4: chose %q, zen4 skipped as %q", r.Backends.CPU, r.Backends.Skipped["zen4"])
	}
	if len(r.Devices) != 1 {
		t.Errorf("%d devices, want one CPU device", len(r.Devices))
	}
	stdout, stderr, code := runBin(t, exe, "--cpu-variant", "zen4", "env")
	wantOneLineError(t, stdout, stderr, code, "zen4", "libggml-cpu-zen4.so")

	for _, lib := range []string{"libggml-cpu-haswell.so", "libggml-cpu-zen4.so"} {
		if err := os.Remove(filepath.Join(dir, lib)); err != nil {
			t.Fatal(err)
		}
	}
	if r := env(); r.Backends.CPU != simd.Builtin || len(r.Backends.Shipped) != 0 {
		t.Errorf("with no libraries: chose %q from %v, want builtin", r.Backends.CPU, r.Backends.Shipped)
	}
}
