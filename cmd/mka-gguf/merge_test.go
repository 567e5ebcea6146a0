package main

// End-to-end tests of "mka-gguf merge" through the binary built by TestMain
// (cli_test.go): output checks (existing OUT, OUT = IN), refused
// architectures, dry runs, every method on a real model, and an interrupted
// write.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// mtSynth writes the synth model cfg to dir/name, passed through edit when
// it is not nil, and returns its path.
func mtSynth(t *testing.T, dir, name string, cfg synth.Config, edit func(e *gguf.Edit)) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if edit == nil {
		if err := synth.Write(path, cfg); err != nil {
			t.Fatal(err)
		}
		return path
	}
	raw := filepath.Join(t.TempDir(), name)
	if err := synth.Write(raw, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := f.Edit()
	edit(e)
	if err := e.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// mtFiles returns the names in dir.
func mtFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// mtNoLeftovers fails if dir holds a temporary file or folder (a name
// starting with ".").
func mtNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	for _, n := range mtFiles(t, dir) {
		if strings.HasPrefix(n, ".") {
			t.Errorf("%s: leftover %s", dir, n)
		}
	}
}

// mtState is what must not change about a file: its bytes and mode time.
type mtState struct {
	data []byte
	mod  time.Time
}

func mtStat(t *testing.T, path string) mtState {
	t.Helper()
	b := readFile(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return mtState{b, st.ModTime()}
}

func (s mtState) check(t *testing.T, path string) {
	t.Helper()
	now := mtStat(t, path)
	if !bytes.Equal(now.data, s.data) || !now.mod.Equal(s.mod) {
		t.Errorf("%s changed (%d bytes, modified %v; was %d bytes, %v)", path, len(now.data), now.mod, len(s.data), s.mod)
	}
}

// mtBlocks opens a written model and returns its block count.
func mtBlocks(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatalf("the output does not open: %v", err)
	}
	defer f.Close()
	n, _ := f.Uint(f.Arch() + ".block_count")
	return n
}

func TestMergeOutputExists(t *testing.T) {
	dir := t.TempDir()
	in := mtSynth(t, dir, "in.gguf", synth.Tiny(), nil)
	out := filepath.Join(dir, "out.gguf")
	if err := os.WriteFile(out, []byte("precious, not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, inBefore := mtStat(t, out), mtStat(t, in)
	stdout, stderr, code := run(t, "merge", "--method", "prune-reverse", "--align", "none", "--remove", "1", in, out)
	t.Log(wantOneLineError(t, stdout, stderr, code, out, "exists", "--force"))
	before.check(t, out)
	inBefore.check(t, in)
	mtNoLeftovers(t, dir)

	// With --force the merge replaces it.
	args := []string{"-q", "merge", "--method", "prune-reverse", "--align", "none", "--remove", "1", "--force", in, out}
	stdout, stderr, code = run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	if n := mtBlocks(t, out); n != 3 {
		t.Errorf("block_count %d after --force, want 3", n)
	}
	inBefore.check(t, in)
	mtNoLeftovers(t, dir)
}

func TestMergeOutputIsInput(t *testing.T) {
	dir := t.TempDir()
	in := mtSynth(t, dir, "in.gguf", synth.Tiny(), nil)
	link := filepath.Join(dir, "link.gguf")
	if err := os.Symlink("in.gguf", link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.gguf")
	if err := os.Link(in, hard); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, in)
	if err != nil {
		t.Fatal(err)
	}
	rel = "./" + rel // relative to the test's working directory, which the binary inherits
	before := mtStat(t, in)

	for _, c := range []struct {
		name    string
		in, out string
	}{
		{"same path", in, in},
		{"dot in path", in, filepath.Join(dir, ".", "in.gguf")},
		{"dot-dot in path", in, filepath.Join(dir, "..", filepath.Base(dir), "in.gguf")},
		{"./ relative", in, rel},
		{"relative input", rel, in},
		{"symlink output", in, link},
		{"symlink input", link, in},
		{"hard link", in, hard},
	} {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/force=%v", c.name, force), func(t *testing.T) {
				args := []string{"merge", "--method", "prune-reverse", "--align", "none", "--remove", "1", c.in, c.out}
				if force {
					args = append(args, "--force")
				}
				stdout, stderr, code := run(t, args...)
				t.Log(wantOneLineError(t, stdout, stderr, code, c.out, "is the input file"))
				before.check(t, in)
				if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("%s is no longer a symlink: %v", link, err)
				}
				mtNoLeftovers(t, dir)
			})
		}
	}
}

func TestMergeRefusesUnsupportedArch(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(e *gguf.Edit)
		wants []string
	}{
		{"mamba", func(e *gguf.Edit) {
			e.SetKV(gguf.KV{Key: "general.architecture", Value: gguf.String("mamba")})
		}, []string{`"mamba"`, "unsupported", "recurrent"}},
		{"experts", func(e *gguf.Edit) {
			e.SetKV(gguf.KV{Key: "llama.expert_count", Value: gguf.Uint32(8)})
		}, []string{`"llama"`, "unsupported", "mixture-of-experts", "8 experts"}},
	} {
		for _, method := range []string{"mka", "prune-reverse"} {
			t.Run(c.name+"/"+method, func(t *testing.T) {
				dir := t.TempDir()
				in := mtSynth(t, dir, "in.gguf", synth.Tiny(), c.edit)
				out := filepath.Join(dir, "out.gguf")
				start := time.Now()
				// Without -q: a calibration or write would show a progress
				// line on stderr, which must hold only the error.
				stdout, stderr, code := run(t, "merge", "--method", method, "--remove", "1", in, out)
				t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), wantOneLineError(t, stdout, stderr, code, append([]string{in}, c.wants...)...))
				if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a refused merge left %s (%v)", out, err)
				}
				if names := mtFiles(t, dir); len(names) != 1 {
					t.Errorf("a refused merge left files: %q", names)
				}
			})
		}
	}
}

func TestMergeDryRun(t *testing.T) {
	dir := t.TempDir()
	in := mtSynth(t, dir, "in.gguf", synth.Tiny(), nil)
	out := filepath.Join(dir, "out.gguf")

	args := []string{"-q", "merge", "--dry-run", "--method", "prune-reverse", "--align", "none", "--remove", "1", in, out}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	if !strings.Contains(stdout, "reverse: 4 -> 3 blocks (1 removed)") || !strings.Contains(stdout, "drop blk 3") {
		t.Errorf("the dry run does not print the plan:\n%s", stdout)
	}
	if strings.Contains(stdout, "wrote") {
		t.Errorf("the dry run says it wrote something:\n%s", stdout)
	}
	if names := mtFiles(t, dir); len(names) != 1 {
		t.Errorf("the dry run wrote files: %q", names)
	}

	// An existing OUT needs no --force and is left alone.
	if err := os.WriteFile(out, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := mtStat(t, out)
	stdout, stderr, code = run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	keep.check(t, out)

	// A method that calibrates, on a real model.
	t.Run("mka", func(t *testing.T) {
		model := shared.Model(t, "stories260K.gguf")
		calib := shared.Path(t, "data/tinystories-train.txt")
		dir := t.TempDir()
		out := filepath.Join(dir, "out.gguf")
		args := []string{"-q", "merge", "--dry-run", "--method", "mka", "--lambda", "0.5", "--remove", "1",
			"--samples", "32", "--ctx", "64", "--calib", calib, "--threads", "1", model, out}
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
		if !strings.Contains(stdout, "mka: 5 -> 4 blocks (1 removed)") || !strings.Contains(stdout, "λ=0.50") {
			t.Errorf("the dry run does not print the plan:\n%s", stdout)
		}
		if names := mtFiles(t, dir); len(names) != 0 {
			t.Errorf("the dry run wrote files: %q", names)
		}
	})
}

// mtStart starts the binary with args and returns the command and a channel
// that receives Wait's result.
func mtStart(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, <-chan error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd, &stderr, done
}

// TestMergeInterrupted sends SIGINT to a merge while it writes its output:
// the merge must fail, leave no OUT (or the old OUT untouched) and no
// temporary file. If the merge happens to finish before the signal, the
// output must be complete; the timing is then tried once more.
func TestMergeInterrupted(t *testing.T) {
	// About 60 MB of F16: a write that takes a moment.
	cfg := synth.Config{Arch: "llama", Blocks: 8, Embd: 512, FFN: 1408, Heads: 8, KVHeads: 8, Vocab: 4096, Ctx: 256, Type: gguf.TypeF16, Seed: 2}
	in := mtSynth(t, t.TempDir(), "in.gguf", cfg, nil)
	inBefore := mtStat(t, in)

	for _, c := range []struct {
		name     string
		existing bool // an older OUT, replaced with --force
		early    bool // signal right after the start, not once the write has begun
	}{
		{"during write", false, false},
		{"during write over an existing OUT", true, false},
		{"right after start", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for attempt := 1; attempt <= 2; attempt++ {
				dir := t.TempDir()
				out := filepath.Join(dir, "out.gguf")
				var old mtState
				args := []string{"merge", "--method", "prune-reverse", "--align", "none", "--remove", "1", "--threads", "1", in, out}
				if c.existing {
					if err := os.WriteFile(out, []byte("an older output\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					old = mtStat(t, out)
					args = append(args, "--force")
				}
				cmd, stderr, done := mtStart(t, args...)
				var werr error
				finished := false
				if !c.early {
					// Wait for the temporary file: the write has begun.
					deadline := time.Now().Add(time.Minute)
				poll:
					for time.Now().Before(deadline) {
						select {
						case werr = <-done:
							finished = true
							break poll
						default:
						}
						for _, n := range mtFiles(t, dir) {
							if strings.HasPrefix(n, ".") {
								break poll
							}
						}
						time.Sleep(time.Millisecond)
					}
				}
				if !finished {
					if err := cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
						t.Fatal(err)
					}
					select {
					case werr = <-done:
					case <-time.After(time.Minute):
						t.Fatalf("the merge did not stop within a minute of SIGINT\nstderr:\n%s", stderr)
					}
				}
				code := cmd.ProcessState.ExitCode()
				inBefore.check(t, in)
				mtNoLeftovers(t, dir)
				if code != 0 {
					t.Logf("attempt %d: exit %d (%v), stderr:\n%s", attempt, code, werr, lastLines(stderr.String(), 3))
					if code == 1 && !strings.Contains(stderr.String(), "interrupted") {
						t.Errorf("stderr does not say the merge was interrupted:\n%s", stderr)
					}
					if c.existing {
						old.check(t, out)
					} else if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("an interrupted merge left %s (%v)", out, err)
					}
					return
				}
				// It finished first: the output must be whole.
				if n := mtBlocks(t, out); n != 7 {
					t.Errorf("attempt %d finished before the signal: block_count %d, want 7", attempt, n)
				}
				t.Logf("attempt %d: the merge finished before the signal; its output is complete", attempt)
			}
		})
	}
}

// lastLines returns the last n lines of s (progress bars redraw with \r).
func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(strings.ReplaceAll(s, "\r", "\n")), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], "\n")
}
