package main

// Issue 27 item 1: every refusal comes before any work (one line on
// stderr, no progress, nothing written), names the user's file and the
// flag the user typed, once.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// quantizedStories writes stories260K quantized to Q8_0 into dir.
func quantizedStories(t *testing.T, dir string) string {
	t.Helper()
	q := filepath.Join(dir, "q8.gguf")
	args := []string{"-q", "quantize", "--no-verify", shared.Model(t, "stories260K.gguf"), q, "Q8_0"}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	return q
}

func TestRefusalsBeforeWork(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	q8 := quantizedStories(t, dir)
	out := filepath.Join(dir, "out.gguf")
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"merge requantize", []string{"merge", "-n", "1", "--quant", "Q4_K_M", q8, out}, []string{q8, "already quantized (Q8_0)", "--allow-requantize"}},
		{"quantize requantize", []string{"quantize", q8, out, "Q4_K_M"}, []string{q8, "already quantized (Q8_0)", "--allow-requantize"}},
		{"OUT is -", []string{"merge", "-n", "1", in, "-"}, []string{`OUT is "-"`, "give a file name"}},
		{"candidates with prune-bi", []string{"merge", "--method", "prune-bi", "--candidates", "3", in, out}, []string{"--candidates", "--method prune-bi does not search"}},
		{"fast with candidates", []string{"merge", "--fast", "--candidates", "3", in, out}, []string{"--candidates does not apply with --fast"}},
		{"fast with heal", []string{"merge", "--fast", "--heal", in, out}, []string{"--heal does not apply with --fast"}},
		{"fast with prune-bi", []string{"merge", "--fast", "--method", "prune-bi", in, out}, []string{"--fast applies to the λ search", "--method prune-bi"}},
		{"lambda with prune-bi", []string{"merge", "--method", "prune-bi", "--lambda", "0.5", in, out}, []string{"--lambda applies to --method mka"}},
		{"order with the search", []string{"merge", "--order", "greedy", in, out}, []string{"--order", "rule-based --lambda"}},
		{"imatrix without quant", []string{"merge", "--imatrix-from", "original", in, out}, []string{"--imatrix-from applies with --quant"}},
		{"max-kld in a dry run", []string{"merge", "--dry-run", "--max-kld", "0.1", in, out}, []string{"--max-kld", "--dry-run"}},
		{"two counts", []string{"merge", "-n", "1", "--blocks", "2", in, out}, []string{"--remove and --blocks"}},
		{"blocks out of range", []string{"merge", "--blocks", "2,9", in, out}, []string{"--blocks", "block 9", in, "0 to 4"}},
		{"calib is a folder", []string{"merge", "--calib", dir, in, out}, []string{dir, "--calib is a directory"}},
		{"calib alias -f", []string{"merge", "-f", dir, in, out}, []string{dir, "-f is a directory"}},
		{"json-file is IN", []string{"merge", "--json-file", in, in, out}, []string{in, "--json-file is the input file"}},
		{"report alias is IN", []string{"merge", "--report", in, in, out}, []string{in, "--report is the input file"}},
		{"unknown long flag", []string{"eval", "--ctx-sizes", "64", in}, []string{"unknown flag --ctx-sizes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tc.args...)
			line := wantOneLineError(t, stdout, stderr, code, tc.wants...)
			for _, p := range []string{dir, in} {
				if n := strings.Count(line, p); n > 1 {
					t.Errorf("%q names %s %d times, want once", line, p, n)
				}
			}
			if strings.Contains(line, ".mka-") {
				t.Errorf("%q names a temporary file", line)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written", out)
			}
		})
	}
}

// TestRefusalDiskSpace: a folder without room is refused before any work,
// and with --quant the quantized OUT is counted beside the merged one.
func TestRefusalDiskSpace(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	out := filepath.Join(dir, "out.gguf")
	need := regexp.MustCompile(`need ([0-9.]+) (KiB|MiB)`)
	needs := map[string]float64{}
	for name, args := range map[string][]string{
		"plain":    {"merge", "-n", "1", in, out},
		"quant":    {"merge", "-n", "1", "--quant", "Q8_0", in, out},
		"quantize": {"quantize", in, out, "F16"},
	} {
		stdout, stderr, code := run(t, args...)
		line := wantOneLineError(t, stdout, stderr, code, out+": not enough disk space")
		m := need.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: %q gives no need in KiB or MiB", name, line)
		}
		needs[name], _ = strconv.ParseFloat(m[1], 64)
		if m[2] == "MiB" {
			needs[name] *= 1024
		}
	}
	if !(needs["quant"] > needs["plain"]) {
		t.Errorf("need %.1f KiB with --quant, %.1f KiB without: the quantized OUT is not counted", needs["quant"], needs["plain"])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d files left in the full folder", len(entries))
	}
}
