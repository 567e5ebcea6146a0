package main

// The reproductions of issue 13 ("a tool a CI job can trust"), run through
// the binary built by TestMain: every bad command line must exit 1 with
// exactly one line on stderr and no panic, leave its inputs byte-identical
// and leave no new file (or folder) behind. Then the cases that must work:
// a capped --threads, --json on stdout, and signals (exit 130 / 143,
// "interrupted", nothing left).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// snapshot maps every path under dir (relative) to its bytes ("/" for a
// folder).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			m[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameSnapshot reports what differs between two snapshots.
func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			t.Errorf("%s was removed", p)
		case a != b:
			t.Errorf("%s changed (%d bytes, was %d)", p, len(a), len(b))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("new file or folder left behind: %s", p)
		}
	}
}

// safetyDir is one case's folder: in.gguf (stories260K), rand.bin (random
// bytes with a NUL), bad.txt (invalid UTF-8 without NUL), short.txt, an
// existing old.json and a folder d holding an old results.json.
func safetyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, shared.Model(t, "stories260K.gguf"), filepath.Join(dir, "in.gguf"), 0o644)
	r := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(1 + r.UintN(255))
	}
	noise[100] = 0
	files := map[string][]byte{
		"rand.bin":  noise,
		"bad.txt":   []byte("Once upon a time \xff\xfe there was a cat.\n"),
		"short.txt": []byte("Once upon a time there was a little cat.\n\nThe cat liked to play.\n"),
		"old.json":  []byte("{\"keep\": true}\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "results.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSafetyBadInput runs each reproduction of issue 13. Arguments name
// files of safetyDir as "@name"; "@T" is the held-out text.
func TestSafetyBadInput(t *testing.T) {
	heldout := shared.Path(t, "data/tinystories-heldout.txt")
	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		// Outputs.
		{"report is the input", []string{"merge", "@in.gguf", "@r2.gguf", "--method", "prune-reverse", "--report", "@in.gguf"}, []string{"in.gguf", "--report is the input file"}},
		{"report is OUT", []string{"merge", "@in.gguf", "@r1.gguf", "--method", "prune-reverse", "--report", "@r1.gguf"}, []string{"r1.gguf", "both OUT and --report"}},
		{"heatmap is the model", []string{"analyze", "@in.gguf", "--heatmap", "@in.gguf"}, []string{"--heatmap is the input file"}},
		{"json-file is the text", []string{"eval", "@in.gguf", "--text", "@short.txt", "--json-file", "@short.txt"}, []string{"--json-file is the input file (--text)"}},
		{"-o is not eval's", []string{"eval", "@in.gguf", "--text", "@short.txt", "-o", "@r.json"}, []string{"unknown flag -o", "--json-file FILE"}},
		{"existing report", []string{"merge", "@in.gguf", "@r2.gguf", "--method", "prune-reverse", "--report", "@old.json"}, []string{"old.json", "exists; use --force"}},
		{"existing analyze json", []string{"analyze", "@in.gguf", "--json-file", "@old.json"}, []string{"old.json", "exists; use --force"}},
		{"existing eval json", []string{"eval", "@in.gguf", "--text", "@T", "--json-file", "@old.json"}, []string{"old.json", "exists; use --force"}},
		{"existing imatrix", []string{"imatrix", "@in.gguf", "-o", "@old.json"}, []string{"old.json", "exists; use --force"}},
		{"report folder missing", []string{"merge", "@in.gguf", "@r2.gguf", "--method", "prune-reverse", "--report", "/nodir/r.json"}, []string{"/nodir/r.json", "folder /nodir does not exist"}},
		{"heatmap folder missing", []string{"analyze", "@in.gguf", "--heatmap", "/nodir/x.png"}, []string{"/nodir/x.png", "does not exist"}},
		{"OUT is a folder", []string{"merge", "@in.gguf", "@d", "--method", "prune-reverse", "--force"}, []string{"OUT is a folder"}},
		{"quantize OUT is a folder", []string{"quantize", "@in.gguf", "@d", "Q8_0", "--force"}, []string{"OUT is a folder"}},
		{"compare folder is a file", []string{"compare", "@in.gguf", "--text", "@T", "--out", "@old.json"}, []string{"old.json", "--out is not a folder"}},
		{"compare over old results", []string{"compare", "@in.gguf", "--text", "@T", "--out", "@d", "--methods", "prune-reverse", "--remove", "1"}, []string{"results.json", "exists; use --force"}},
		{"compare fails after it began", []string{"-q", "compare", "@in.gguf", "--text", "@short.txt", "--out", "@cmp", "--methods", "prune-reverse", "--remove", "1", "--samples", "8", "--ctx", "16", "--eval-ctx", "64"}, []string{"short.txt", "too little text"}},
		// Numbers.
		{"merge --ctx 0", []string{"merge", "@in.gguf", "@r2.gguf", "--ctx", "0"}, []string{"--ctx 0", "≥ 8"}},
		{"merge --ctx -1", []string{"merge", "@in.gguf", "@r2.gguf", "--ctx", "-1"}, []string{"--ctx -1", "≥ 8"}},
		{"analyze --ctx 0", []string{"analyze", "@in.gguf", "--ctx", "0"}, []string{"--ctx 0", "≥ 8"}},
		{"imatrix --ctx 0", []string{"imatrix", "@in.gguf", "-o", "@im.gguf", "--ctx", "0"}, []string{"--ctx 0", "≥ 8"}},
		{"compare --ctx 0", []string{"compare", "@in.gguf", "--text", "@T", "--out", "@cmp", "--ctx", "0"}, []string{"--ctx 0", "≥ 8"}},
		{"eval --ctx 0", []string{"eval", "@in.gguf", "--text", "@T", "--ctx", "0"}, []string{"--ctx 0", "≥ 8"}},
		{"eval --ctx -5", []string{"eval", "@in.gguf", "--text", "@T", "-c", "-5"}, []string{"--ctx -5", "≥ 8"}},
		{"merge --ratio 0", []string{"merge", "@in.gguf", "@r2.gguf", "--ratio", "0"}, []string{"--ratio 0", "(0, 1)"}},
		{"merge --ratio 1.5", []string{"merge", "@in.gguf", "@r2.gguf", "--ratio", "1.5"}, []string{"--ratio 1.5", "(0, 1)"}},
		{"merge --ratio 0.05 removes none", []string{"merge", "@in.gguf", "@r2.gguf", "--ratio", "0.05"}, []string{"removes 0 of", "5 blocks", "want 1 to 4"}},
		{"eval --threads -3", []string{"eval", "@in.gguf", "--text", "@T", "--threads", "-3"}, []string{"--threads -3", "≥ 1"}},
		{"eval --threads 0", []string{"eval", "@in.gguf", "--text", "@T", "-t", "0"}, []string{"--threads 0", "≥ 1"}},
		{"compare --eval-ctx 0", []string{"compare", "@in.gguf", "--text", "@T", "--out", "@cmp", "--eval-ctx", "0"}, []string{"--eval-ctx 0", "≥ 8"}},
		{"merge --candidates 0", []string{"merge", "@in.gguf", "@r2.gguf", "--candidates", "0"}, []string{"--candidates 0", "≥ 1"}},
		{"merge --samples 0", []string{"merge", "@in.gguf", "@r2.gguf", "--samples", "0"}, []string{"--samples 0", "≥ 1"}},
		{"analyze --samples 4", []string{"analyze", "@in.gguf", "--samples", "4"}, []string{"--samples 4", "≥ 8"}},
		{"merge --batch 0", []string{"merge", "@in.gguf", "@r2.gguf", "-b", "0"}, []string{"--batch 0", "≥ 1"}},
		{"eval --windows 0", []string{"eval", "@in.gguf", "--text", "@T", "--chunks", "0"}, []string{"--windows 0", "≥ 1"}},
		{"merge --holdout 1.2", []string{"merge", "@in.gguf", "@r2.gguf", "--holdout", "1.2"}, []string{"--holdout 1.2", "(0, 0.9]"}},
		{"merge --remove 5 of 5", []string{"merge", "@in.gguf", "@r2.gguf", "--remove", "5"}, []string{"--remove 5", "5 blocks", "1 to 4"}},
		{"merge --remove 0", []string{"merge", "@in.gguf", "@r2.gguf", "--remove", "0"}, []string{"--remove 0", "≥ 1"}},
		{"compare --remove 5 of 5", []string{"compare", "@in.gguf", "--text", "@T", "--out", "@cmp", "--remove", "1,5"}, []string{"--remove 5", "1 to 4"}},
		{"gpu-layers -2", []string{"-ngl", "-2", "eval", "@in.gguf", "--text", "@T"}, []string{"--gpu-layers -2"}},
		// Choices.
		{"merge --rep", []string{"merge", "@in.gguf", "@r2.gguf", "--rep", "first"}, []string{`--rep "first"`, "mean, last"}},
		{"merge --method", []string{"merge", "@in.gguf", "@r2.gguf", "--method", "prune"}, []string{`--method "prune"`, "prune-reverse"}},
		{"merge --lambda", []string{"merge", "@in.gguf", "@r2.gguf", "--lambda", "2"}, []string{`--lambda "2"`, "[0, 1]"}},
		{"merge --order", []string{"merge", "@in.gguf", "@r2.gguf", "--order", "random"}, []string{`--order "random"`, "back-to-front"}},
		{"merge --norms", []string{"merge", "@in.gguf", "@r2.gguf", "--norms", "last"}, []string{`--norms "last"`, "weighted, first"}},
		{"merge --kernel", []string{"merge", "@in.gguf", "@r2.gguf", "--kernel", "gauss"}, []string{`--kernel "gauss"`, "median, paper"}},
		{"merge --imatrix-from", []string{"merge", "@in.gguf", "@r2.gguf", "--imatrix-from", "x"}, []string{`--imatrix-from "x"`, "merged, original, none"}},
		{"merge --quant", []string{"merge", "@in.gguf", "@r2.gguf", "--quant", "Q9"}, []string{"--quant", "Q9"}},
		{"compare --methods", []string{"compare", "@in.gguf", "--text", "@T", "--out", "@cmp", "--methods", "mka,nope"}, []string{`"nope"`, "prune-bi"}},
		{"quantize IQ2_XXS without imatrix", []string{"quantize", "@in.gguf", "@q.gguf", "IQ2_XXS"}, []string{"IQ2_XXS needs an importance matrix", "--imatrix", "mka-gguf imatrix"}},
		{"synth --preset huge", []string{"synth", "@s.gguf", "--preset", "huge"}, []string{`"huge"`, "tiny, demo, 1gb"}},
		{"synth --type Q4_0", []string{"synth", "@s.gguf", "--type", "Q4_0"}, []string{`--type "Q4_0"`, "F32, F16, BF16"}},
		// Text inputs.
		{"calib is a GGUF", []string{"merge", "@in.gguf", "@r2.gguf", "--calib", "@in.gguf"}, []string{"in.gguf: is a GGUF model, not text"}},
		{"text is a GGUF", []string{"eval", "@in.gguf", "--text", "@in.gguf"}, []string{"in.gguf: is a GGUF model, not text"}},
		{"text is random bytes", []string{"eval", "@in.gguf", "-f", "@rand.bin"}, []string{"rand.bin: not text: NUL byte at byte offset 100"}},
		{"calib is random bytes", []string{"analyze", "@in.gguf", "--calib", "@rand.bin"}, []string{"rand.bin: not text"}},
		{"text is invalid UTF-8", []string{"compare", "@in.gguf", "--text", "@bad.txt", "--out", "@cmp"}, []string{"bad.txt: not text: invalid UTF-8 at byte offset 17"}},
		{"imatrix calib invalid UTF-8", []string{"imatrix", "@in.gguf", "-o", "@im.gguf", "-f", "@bad.txt"}, []string{"bad.txt: not text: invalid UTF-8 at byte offset 17"}},
		// Command line.
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate"`, "merge", "analyze", "eval"}},
		{"help for an unknown command", []string{"help", "frobnicate"}, []string{`unknown command "frobnicate"`, "merge"}},
		{"--json-file without a value", []string{"analyze", "@in.gguf", "--json-file"}, []string{"json-file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := safetyDir(t)
			args := make([]string, len(c.args))
			for i, a := range c.args {
				switch {
				case a == "@T":
					args[i] = heldout
				case strings.HasPrefix(a, "@"):
					args[i] = filepath.Join(dir, a[1:])
				default:
					args[i] = a
				}
			}
			before := snapshot(t, dir)
			stdout, stderr, code := run(t, args...)
			t.Log(wantOneLineError(t, stdout, stderr, code, c.wants...))
			sameSnapshot(t, before, snapshot(t, dir))
		})
	}
}

// TestSafetyCapped checks the values that are capped with one warning
// line instead of refused: --threads above the CPUs and --ctx above the
// model's training context. With -q the warnings are all of stderr.
func TestSafetyCapped(t *testing.T) {
	dir := safetyDir(t)
	model := filepath.Join(dir, "in.gguf")
	heldout := shared.Path(t, "data/tinystories-heldout.txt")
	before := snapshot(t, dir)
	args := []string{"-q", "eval", model, "--text", heldout, "--threads", "10000", "--ctx", "4096", "--windows", "1", "--json"}
	start := time.Now()
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	t.Logf("%v: %s", time.Since(start), stderr)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "--threads 10000 is more than the") ||
		!strings.Contains(lines[1], "--ctx 4096 is above") || !strings.Contains(lines[1], "2048") {
		t.Errorf("want one warning line each for --threads and --ctx, got:\n%s", stderr)
	}
	var r evalReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Quality == nil {
		t.Fatalf("eval --json: %v\n%s", err, stdout)
	}
	if q := r.Quality; r.Ctx != 2048 || !(q.PPL > 1) || !(q.PPLErr > 0) {
		t.Errorf("eval --json: ctx %d, quality.ppl %v, quality.ppl_stderr %v; want ctx 2048 and a measurement", r.Ctx, q.PPL, q.PPLErr)
	}
	sameSnapshot(t, before, snapshot(t, dir))
}

// TestSafetyJSON checks --json and --json-file: the same JSON on stdout and
// in the file, snake_case names, and the output's sha256.
func TestSafetyJSON(t *testing.T) {
	dir := safetyDir(t)
	in, out, rep := filepath.Join(dir, "in.gguf"), filepath.Join(dir, "out.gguf"), filepath.Join(dir, "rep.json")
	args := []string{"-q", "merge", in, out, "--method", "prune-reverse", "--align", "none", "--remove", "1", "--json", "--json-file", rep}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	file := readFile(t, rep)
	if !bytes.Equal(bytes.TrimSpace(file), bytes.TrimSpace([]byte(stdout))) {
		t.Errorf("--json printed other JSON than --json-file wrote:\n%s\nvs\n%s", stdout, file)
	}
	var r map[string]any
	if err := json.Unmarshal(file, &r); err != nil {
		t.Fatal(err)
	}
	sum, err := files.SHA256(out)
	if err != nil {
		t.Fatal(err)
	}
	if r["output_sha256"] != sum {
		t.Errorf("output_sha256 %v, want %s", r["output_sha256"], sum)
	}
	steps, _ := r["steps"].([]any)
	if len(steps) != 1 {
		t.Fatalf("steps %v", r["steps"])
	}
	st := steps[0].(map[string]any)
	if st["step"] != 1.0 || st["kind"] != "drop" || st["block"] != 4.0 || st["blocks"] != nil || st["lambda"] != nil {
		t.Errorf("step %v: want step 1, a drop of block 4, no blocks pair or λ", st)
	}
	var keys func(v any)
	keys = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k != strings.ToLower(k) || strings.ContainsAny(k, " -") {
					t.Errorf("JSON name %q is not snake_case", k)
				}
				keys(x)
			}
		case []any:
			for _, x := range v {
				keys(x)
			}
		}
	}
	keys(r)

	// Every other command with machine output: the same JSON on stdout and
	// in --json-file, snake_case, and the sha256 of the file it wrote.
	syn, q := filepath.Join(dir, "s.gguf"), filepath.Join(dir, "q.gguf")
	for i, args := range [][]string{
		{"synth", syn, "--preset", "tiny"},
		{"inspect", syn},
		{"quantize", syn, q, "Q8_0"},
		{"eval", in, "--text", filepath.Join(dir, "short.txt"), "--ctx", "16"},
		{"env"},
	} {
		js := filepath.Join(dir, fmt.Sprintf("%d.json", i))
		args = append([]string{"-q"}, append(args, "--json", "--json-file", js)...)
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
		if file := readFile(t, js); !bytes.Equal(bytes.TrimSpace(file), bytes.TrimSpace([]byte(stdout))) {
			t.Errorf("%s: --json printed other JSON than --json-file wrote:\n%s\nvs\n%s", args[1], stdout, file)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(stdout), &m); err != nil {
			t.Fatalf("%s --json: %v\n%s", args[1], err, stdout)
		}
		keys(m)
		if o, ok := m["output"].(string); ok {
			if sum, err := files.SHA256(o); err != nil || m["output_sha256"] != sum {
				t.Errorf("%s: output_sha256 %v, want %s (%v)", args[1], m["output_sha256"], sum, err)
			}
		}
	}
}

// TestSafetySignals interrupts a calibrating merge with SIGINT and with
// SIGTERM: exit 130 / 143, "mka-gguf: interrupted" as the last line, no
// OUT, no report and no temporary file; the input unchanged. A second
// signal right after the first ends the process at once, with the same
// guarantees.
func TestSafetySignals(t *testing.T) {
	model := shared.Model(t, "tinystories-deep12.gguf")
	calib := shared.Path(t, "data/tinystories-train.txt")
	for _, c := range []struct {
		name string
		sigs []syscall.Signal
		code int
	}{
		{"SIGINT", []syscall.Signal{syscall.SIGINT}, 130},
		{"SIGTERM", []syscall.Signal{syscall.SIGTERM}, 143},
		{"two signals", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM}, 143},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.gguf")
			copyFile(t, model, in, 0o644)
			before := snapshot(t, dir)
			cmd := exec.Command(bin, "merge", in, filepath.Join(dir, "out.gguf"), "--calib", calib,
				"--samples", "128", "--threads", "1", "--report", filepath.Join(dir, "r.json"))
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() {
				if cmd.ProcessState == nil {
					cmd.Process.Kill()
					<-done
				}
			}()
			// Wait until calibration runs.
			deadline := time.Now().Add(time.Minute)
			for !strings.Contains(stderr.String(), "calibrate") {
				if time.Now().After(deadline) {
					t.Fatalf("calibration did not start:\n%s", stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			sent := time.Now()
			for _, s := range c.sigs {
				if err := cmd.Process.Signal(s); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("still running a minute after the signal:\n%s", stderr.String())
			}
			t.Logf("exited %v after the signal", time.Since(sent))
			if got := cmd.ProcessState.ExitCode(); got != c.code {
				t.Errorf("exit code %d, want %d", got, c.code)
			}
			if last := lastLines(stderr.String(), 1); last != "mka-gguf: interrupted" {
				t.Errorf("last line of stderr %q, want \"mka-gguf: interrupted\"", last)
			}
			if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "goroutine") {
				t.Errorf("stderr shows a panic:\n%s", stderr.String())
			}
			sameSnapshot(t, before, snapshot(t, dir))
		})
	}
}

// syncBuffer is a bytes.Buffer that a running command writes to while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
