package main

// Issue 27 item 5: help texts true for each command.

import (
	"regexp"
	"strings"
	"testing"
)

func TestHelpTexts(t *testing.T) {
	help := map[string]string{}
	for _, c := range []string{"merge", "eval", "compare", "imatrix", "analyze", "quantize", "inspect", "make-choices", "synth", "env", "bench"} {
		stdout, stderr, code := run(t, c, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit code %d\n%s", c, code, stderr)
		}
		help[c] = stdout
		for _, line := range strings.Split(stdout, "\n") {
			if strings.Count(line, "(default:") > 1 {
				t.Errorf("%s --help: two defaults in %q", c, line)
			}
			if regexp.MustCompile(`(^|\s)-o\b`).MatchString(line) && regexp.MustCompile(`\bJSON\b`).MatchString(line) && !strings.Contains(line, "JSONL") {
				t.Errorf("%s --help: -o names a JSON report: %q", c, line)
			}
		}
		for _, f := range []string{"--json ", "--json-file FILE"} {
			if !strings.Contains(stdout, f) {
				t.Errorf("%s --help has no %s", c, f)
			}
		}
	}
	samples := regexp.MustCompile(`(?m)^\s*--samples value\s+(.*)$`)
	for _, c := range []string{"merge", "compare", "analyze"} {
		if m := samples.FindStringSubmatch(help[c]); m == nil || strings.Contains(m[1], "imatrix") {
			t.Errorf("%s --help: --samples %v speaks of imatrix or is missing", c, m)
		}
	}
	if m := samples.FindStringSubmatch(help["imatrix"]); m == nil || strings.Contains(m[1], "manifold") {
		t.Errorf("imatrix --help: --samples %v speaks of manifolds or is missing", m)
	}
	for _, want := range []string{"ppl.png", "kld.png", "accuracy.png", "results.json"} {
		if !strings.Contains(help["compare"], want) {
			t.Errorf("compare --help does not name %s", want)
		}
	}
	for _, want := range []string{"--blocks", "--plan FILE", "--target-size SIZE", "--max-kld X", "--imatrix FILE", "--allow-requantize", "--ctx-size", "--file FILE", "--threads"} {
		if !strings.Contains(help["merge"], want) {
			t.Errorf("merge --help does not name %s", want)
		}
	}
	stdout, _, _ := run(t, "--help")
	if !strings.Contains(stdout, "--n-gpu-layers") {
		t.Errorf("mka-gguf --help does not name --n-gpu-layers")
	}
}
