package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/bench"
)

// readBenchReport reads a bench --json file and checks what every report
// must hold: positive values, and ratio = value / baseline wherever there
// is a baseline.
func readBenchReport(t *testing.T, path string) (bench.Report, map[string]bench.Result) {
	t.Helper()
	data := readFile(t, path)
	var r bench.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.Version == "" || r.Go == "" || r.CPU == "" || r.CPUVariant == "" || r.Threads < 1 {
		t.Errorf("header incomplete: version %q go %q cpu %q cpu_variant %q threads %d", r.Version, r.Go, r.CPU, r.CPUVariant, r.Threads)
	}
	byName := map[string]bench.Result{}
	for _, res := range r.Results {
		if _, dup := byName[res.Name]; dup {
			t.Errorf("result %q appears twice", res.Name)
		}
		byName[res.Name] = res
		if !(res.Value > 0) || res.Unit == "" {
			t.Errorf("%s: value %v %q, want a positive value with a unit", res.Name, res.Value, res.Unit)
		}
		if res.BaselineName == "" {
			if res.BaselineValue != 0 || res.Ratio != 0 {
				t.Errorf("%s: no baseline name but baseline %v, ratio %v", res.Name, res.BaselineValue, res.Ratio)
			}
			continue
		}
		if !(res.BaselineValue > 0) {
			t.Errorf("%s: baseline %s = %v, want > 0", res.Name, res.BaselineName, res.BaselineValue)
			continue
		}
		if want := res.Value / res.BaselineValue; math.Abs(res.Ratio-want) > 1e-9*want {
			t.Errorf("%s: ratio %v, want value/baseline = %v/%v = %v", res.Name, res.Ratio, res.Value, res.BaselineValue, want)
		}
		if res.Goal > 0 {
			met := res.Ratio >= res.Goal
			if res.AtMost {
				met = res.Ratio <= res.Goal
			}
			if res.GoalMet == nil || *res.GoalMet != met {
				t.Errorf("%s: goal %v, ratio %v, goal_met %v", res.Name, res.Goal, res.Ratio, res.GoalMet)
			}
		}
	}
	return r, byName
}

func TestBench(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bench.json")
	args := []string{"bench", "--size", "tiny", "--only", "decode,simd", "--json-file", out}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	r, res := readBenchReport(t, out)
	if m := r.Model; m == nil || m.Bytes <= 0 || m.Params == 0 || m.Blocks != 4 || m.Embd != 256 || m.Generated != "tiny" {
		t.Errorf("model %+v, want the generated tiny model (4 blocks, embd 256)", m)
	}
	if r.Decode <= 0 {
		t.Errorf("decode_tokens %d", r.Decode)
	}
	for _, name := range []string{"decode.hook", "decode.capture"} {
		if c, ok := res[name]; !ok || c.BaselineName != "decode.bare" || c.Goal != 0.95 || c.BaselineValue != res["decode.bare"].Value {
			t.Errorf("%s = %+v, want a ratio against decode.bare with goal 0.95", name, c)
		}
	}
	for _, k := range []string{"F16ToF32", "F32ToF16", "BF16ToF32", "F32ToBF16", "Lerp", "Axpy", "Dot", "SqDist"} {
		if s, ok := res["simd."+k]; !ok || s.BaselineName != "pure Go" {
			t.Errorf("simd.%s = %+v, want a ratio against pure Go", k, s)
		}
	}
	for name := range res {
		if strings.HasPrefix(name, "rewrite.") || strings.HasPrefix(name, "quant.") {
			t.Errorf("result %s not asked for by --only", name)
		}
	}
	// The table on stdout holds every result.
	for _, want := range append([]string{"name", "ratio", "goal"}, func() []string {
		var n []string
		for _, x := range r.Results {
			n = append(n, x.Name)
		}
		return n
	}()...) {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
}

// TestBenchAgainst compares with another binary (a copy of this one) and
// with this binary forced to the built-in CPU code.
func TestBenchAgainst(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other-mka-gguf")
	copyFile(t, bin, other, 0o755)
	out := filepath.Join(dir, "bench.json")
	args := []string{"bench", "--size", "tiny", "--only", "decode", "--rounds", "1", "--decode-tokens", "1024",
		"--against", "copy=" + other, "--against", "builtin=SELF", "--json-file", out}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	r, res := readBenchReport(t, out)
	if len(r.Against) != 2 {
		t.Fatalf("against: %+v, want 2 entries", r.Against)
	}
	for i, name := range []string{"copy", "builtin"} {
		a := r.Against[i]
		if a.Name != name || a.CPUVariant == "" || len(a.Samples) != 1 || !(a.Capture > 0) {
			t.Errorf("against[%d] = %+v, want %s with a CPU variant and 1 sample", i, a, name)
		}
		x, ok := res["against."+name]
		if !ok || x.BaselineValue != a.Capture || x.Value != res["decode.capture"].Value {
			t.Errorf("against.%s = %+v, want decode.capture %v / %v", name, x, res["decode.capture"].Value, a.Capture)
		}
	}
	if b := r.Against[1]; b.CPUVariant != "builtin" || b.Tokens >= r.Decode || !strings.HasPrefix(strings.Join(b.Args, " "), "--cpu-variant builtin ") {
		t.Errorf("builtin=SELF ran %v with cpu variant %q and %d tokens (this run: %d)", b.Args, b.CPUVariant, b.Tokens, r.Decode)
	}
}

func TestBenchErrors(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"bench", "--only", "decode,bogus"}, []string{"bench", `"bogus"`, "--only"}},
		{[]string{"bench", "--size", "huge"}, []string{"bench", `"huge"`, "--size"}},
		{[]string{"bench", "--only", "simd", "--against", "x=SELF"}, []string{"--against", "decode"}},
		{[]string{"bench", "--only", "decode", "--against", "x=/nonexistent/mka-gguf"}, []string{"--against", "/nonexistent/mka-gguf"}},
		{[]string{"bench", "--model", "/nonexistent.gguf", "--only", "rewrite"}, []string{"/nonexistent.gguf"}},
		{[]string{"bench", "--size", "tiny", "--only", "merge"}, []string{"bench", "merge", "removes 4 blocks", "tiny model has 4"}},
	} {
		stdout, stderr, code := run(t, tc.args...)
		wantOneLineError(t, stdout, stderr, code, tc.wants...)
	}
}

// TestBenchLlamaCppSkipped checks that without llama-perplexity the part
// is one row that says it was skipped and why, and the run succeeds.
func TestBenchLlamaCppSkipped(t *testing.T) {
	t.Setenv("MKA_LLAMA_PERPLEXITY", filepath.Join(t.TempDir(), "no-such-llama-perplexity"))
	out := filepath.Join(t.TempDir(), "bench.json")
	args := []string{"bench", "--size", "tiny", "--only", "llamacpp", "--json-file", out}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r bench.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 1 || r.Results[0].Name != "llamacpp.eval" || r.Results[0].Value != 0 ||
		!strings.HasPrefix(r.Results[0].Note, "skipped: llama-perplexity not found") {
		t.Errorf("results %+v, want one llamacpp.eval row saying it was skipped", r.Results)
	}
}

// TestBenchQuantRSS runs the quant part's memory comparison with this
// binary standing in for llama-quantize (a script with its arguments): the
// outputs are the same bytes and the peaks close to each other; without
// llama-quantize the comparison is one row saying it was skipped.
func TestBenchQuantRSS(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench.json")
	args := []string{"bench", "--size", "tiny", "--only", "quant", "--rounds", "1", "--force", "--json-file", out}

	t.Setenv("MKA_LLAMA_QUANTIZE", filepath.Join(dir, "no-such-llama-quantize"))
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var skipped bench.Report
	if err := json.Unmarshal(data, &skipped); err != nil {
		t.Fatal(err)
	}
	if r := skipped.Results[len(skipped.Results)-1]; r.Name != "quant.rss" || r.Value != 0 || !strings.HasPrefix(r.Note, "skipped: llama-quantize not found") {
		t.Errorf("last result %+v, want a quant.rss row saying it was skipped", r)
	}

	stand := filepath.Join(dir, "llama-quantize")
	script := "#!/bin/sh\nexec " + bin + " quantize --threads \"$4\" --no-verify --force \"$1\" \"$2\" \"$3\"\n"
	if err := os.WriteFile(stand, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MKA_LLAMA_QUANTIZE", stand)
	stdout, stderr, code = run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	_, res := readBenchReport(t, out)
	for _, name := range []string{"quant.rss.Q8_0", "quant.rss_anon.Q8_0", "quant.rss.Q4_K_M", "quant.rss_anon.Q4_K_M"} {
		r, ok := res[name]
		if !ok || r.Goal != 1.2 || !r.AtMost || r.Ratio < 0.5 || r.Ratio > 2 {
			t.Errorf("%s = %+v, want ours / the same binary's peak near 1, goal at most 1.2", name, r)
		}
		if strings.HasPrefix(name, "quant.rss.") && !strings.Contains(r.Note, "outputs identical") {
			t.Errorf("%s: note %q, want the outputs identical", name, r.Note)
		}
	}
}
