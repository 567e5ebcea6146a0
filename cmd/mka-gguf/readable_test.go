package main

// Issue 27 item 4: output a person reads: losses with their unit beside
// IN's, the quality line with the PPL of IN and OUT, the removed original
// blocks, a warning for calibration text far from the model's domain,
// phases counted from the start and bars that reach 100 %, and a test
// run that says which package runs.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func TestReadableMergeOutput(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	args := append([]string{"merge", in, filepath.Join(dir, "out.gguf"), "-n", "1"}, quickCalib(t)...)
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	for _, re := range []string{
		`step 1: drop blk \d.*held-back loss \d+\.\d+ nats/token \(IN \d+\.\d+\)`,
		`quality lost: mean KLD .*; PPL \d+\.\d+ \(IN\) -> \d+\.\d+ \(OUT\) on held-back calibration text`,
		`(?m)^removed original blocks \d$`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("stdout has no line matching %s:\n%s", re, stdout)
		}
	}
	// The phases are counted from the start, in order, and the write bar
	// ends at 100 %.
	phases := regexp.MustCompile(`(?m)^\[(\d)/(\d)\] (\w+)`).FindAllStringSubmatch(stderr, -1)
	var got []string
	for _, p := range phases {
		got = append(got, p[1]+"/"+p[2]+" "+p[3])
	}
	// The search's decodes (the healing stage's, when it changed the
	// model) give the quality check: no phase of its own.
	if want := "1/3 calibrate,2/3 search,3/3 write"; strings.Join(got, ",") != want {
		t.Errorf("phases %v, want %s:\n%s", got, want, stderr)
	}
	if !regexp.MustCompile(`(?m)^write 100% `).MatchString(stderr) {
		t.Errorf("the write bar does not reach 100 %%:\n%s", stderr)
	}
	if strings.Contains(stderr, "far from") {
		t.Errorf("in-domain calibration text warned of:\n%s", stderr)
	}
}

// TestDomainWarning: the built-in calibration set is far from
// stories260K's domain (PPL above 100): the merge says so and names the
// flag to use.
func TestDomainWarning(t *testing.T) {
	in := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	args := []string{"merge", in, filepath.Join(dir, "out.gguf"), "--method", "prune-bi", "--align", "none", "-n", "1", "--samples", "16", "--ctx", "256", "--no-check-quality"}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	if !regexp.MustCompile(`warning: IN's perplexity on the built-in calibration set is \d+ \(above 100\).*--calib FILE`).MatchString(stderr) {
		t.Errorf("no domain warning naming --calib FILE:\n%s", stderr)
	}
}

// TestGoTestProgress: scripts/gotest.sh (make test's check target) prints
// each package as it starts and ends, and a failing package's output.
func TestGoTestProgress(t *testing.T) {
	script, err := filepath.Abs("../../scripts/gotest.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module demo\n\ngo 1.22\n")
	write("good/good_test.go", "package good\n\nimport \"testing\"\n\nfunc TestOK(t *testing.T) {}\n")
	write("bad/bad_test.go", "package bad\n\nimport \"testing\"\n\nfunc TestBad(t *testing.T) { t.Fatal(\"the reason\") }\n")
	cmd := exec.Command("bash", script, "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("a failing package gave exit status 0:\n%s", out)
	}
	for _, re := range []string{`(?m)^run   demo/good$`, `(?m)^ok    demo/good  `, `(?m)^run   demo/bad$`, `the reason`, `(?m)^FAIL  demo/bad  `} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("no line matching %s in:\n%s", re, out)
		}
	}
}
