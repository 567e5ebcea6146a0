package main

// End-to-end tests of the mka-gguf binary: TestMain builds it once, the
// tests run it as a user would and check exit codes, stdout and stderr.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// bin is the mka-gguf binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mka-gguf-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "mka-gguf")
	// The package directory is the working directory of a test binary; the
	// inherited environment carries the cgo flags of build/env.sh.
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = os.Environ()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "TestMain: go build failed (did you source build/env.sh?): %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// runTimeout bounds one run of the binary.
const runTimeout = 2 * time.Minute

// run runs the binary with args and returns its stdout, stderr and exit
// code. It fails the test when the binary cannot be started or times out.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBin(t, bin, args...)
}

// runBin is run for another binary (e.g. the portable build's).
func runBin(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBinFor(t, runTimeout, bin, args...)
}

// runBinFor is runBin with its own time limit.
func runBinFor(t *testing.T, limit time.Duration, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// llama.cpp's info log would add lines to stderr.
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MKA_VERBOSE=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mka-gguf %s: timed out after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), limit, o.String(), e.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("mka-gguf %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// wantOneLineError checks a failed run: exit code 1, nothing on stdout,
// exactly one line on stderr that starts with "mka-gguf: " and contains
// every string of wants, and no sign of a panic. It returns the line.
func wantOneLineError(t *testing.T, stdout, stderr string, code int, wants ...string) string {
	t.Helper()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if stdout != "" {
		t.Errorf("stdout is not empty:\n%s", stdout)
	}
	for _, bad := range []string{"panic", "goroutine"} {
		if strings.Contains(stdout+stderr, bad) {
			t.Errorf("output mentions %q:\nstdout:\n%s\nstderr:\n%s", bad, stdout, stderr)
		}
	}
	line, rest, _ := strings.Cut(stderr, "\n")
	if rest != "" || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not exactly one line:\n%s", stderr)
	}
	if !strings.HasPrefix(line, "mka-gguf: ") {
		t.Errorf("stderr %q does not start with \"mka-gguf: \"", line)
	}
	for _, w := range wants {
		if !strings.Contains(line, w) {
			t.Errorf("stderr %q does not contain %q", line, w)
		}
	}
	return line
}

// readFile returns the contents of path, failing the test on error.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyFile copies from to to with the given mode.
func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), mode); err != nil {
		t.Fatal(err)
	}
}

// wantOK checks a successful run: exit code 0 and no "panic".
func wantOK(t *testing.T, args []string, stdout, stderr string, code int) {
	t.Helper()
	if code != 0 {
		t.Fatalf("mka-gguf %s: exit code %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "panic") {
		t.Fatalf("mka-gguf %s: output mentions panic:\n%s\n%s", strings.Join(args, " "), stdout, stderr)
	}
}

// Building corrupt files.

// Fixed places in the GGUF header (magic, version, tensor count, kv count).
const (
	hdrVersion     = 4
	hdrTensorCount = 8
	hdrKVCount     = 16
	hdrEnd         = 24
)

// strEnd returns the position just after the length-prefixed string s in
// data (for a key: where its value type is; for a tensor name: where its
// ndims is).
func strEnd(t *testing.T, data []byte, s string) int {
	t.Helper()
	p := binary.LittleEndian.AppendUint64(nil, uint64(len(s)))
	p = append(p, s...)
	i := bytes.Index(data, p)
	if i < 0 || bytes.Index(data[i+1:], p) >= 0 {
		t.Fatalf("string %q is not in the file exactly once", s)
	}
	return i + len(p)
}

// valuePos returns the position of key's value (after its type).
func valuePos(t *testing.T, data []byte, key string) int { return strEnd(t, data, key) + 4 }

// tensorTypePos returns the position of a tensor info's type field.
func tensorTypePos(t *testing.T, data []byte, name string) int {
	p := strEnd(t, data, name)
	nd := int(binary.LittleEndian.Uint32(data[p:]))
	return p + 4 + 8*nd
}

// tensorOffsetPos returns the position of a tensor info's offset field.
func tensorOffsetPos(t *testing.T, data []byte, name string) int {
	return tensorTypePos(t, data, name) + 4
}

// longValue is a string value long enough that a file cut inside it still
// has more bytes left than the header's minimum for its counts, so the cut
// is found while reading the metadata.
var longValue = strings.Repeat("lorem ipsum ", 40)

// writeSmallGGUF writes a small valid GGUF v3 file with four keys and three
// tensors (t.a F32 16×4, t.b F32 16, t.c F16 32×2) and returns its bytes
// and its parsed form.
func writeSmallGGUF(t *testing.T, path string) ([]byte, *gguf.File) {
	t.Helper()
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String("llama")},
		{Key: "general.name", Value: gguf.String("small")},
		{Key: "test.flag", Value: gguf.Bool(true)},
		{Key: "test.long", Value: gguf.String(longValue)},
	}
	mk := func(name string, typ gguf.Type, dims ...uint64) gguf.OutTensor {
		info := gguf.TensorInfo{Name: name, Dims: dims, Type: typ}
		data := make([]byte, info.Size())
		for i := range data {
			data[i] = byte(i % 7)
		}
		return gguf.OutTensor{Info: info, Src: bytes.NewReader(data)}
	}
	ts := []gguf.OutTensor{
		mk("t.a", gguf.TypeF32, 16, 4),
		mk("t.b", gguf.TypeF32, 16),
		mk("t.c", gguf.TypeF16, 32, 2),
	}
	if err := gguf.WriteFile(path, 3, kvs, 0, ts); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, path)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatalf("the small file does not open: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return data, f
}

func TestInspectBadInput(t *testing.T) {
	dir := t.TempDir()
	good, f := writeSmallGGUF(t, filepath.Join(dir, "good.gguf"))
	if len(f.Tensors) != 3 || f.Tensors[0].Offset != 0 {
		t.Fatalf("unexpected layout of the small file: %+v", f.Tensors)
	}
	headerEnd := tensorOffsetPos(t, good, "t.c") + 8
	lastEnd := f.DataOffset + int64(f.Tensors[2].Offset+f.Tensors[2].Size())
	if headerEnd <= hdrEnd || f.DataOffset < int64(headerEnd) || lastEnd > int64(len(good)) {
		t.Fatalf("unexpected layout: header end %d, data at %d, last tensor ends at %d, file %d bytes", headerEnd, f.DataOffset, lastEnd, len(good))
	}
	longAt := valuePos(t, good, "test.long") + 8 // the string's bytes

	mod := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	put32 := func(pos int, v uint32) []byte {
		return mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[pos:], v); return b })
	}
	put64 := func(pos int, v uint64) []byte {
		return mod(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[pos:], v); return b })
	}

	type tc struct {
		name  string
		data  []byte                          // written to the file
		setup func(t *testing.T, path string) // instead of writing data
		wants []string                        // substrings of the error line besides the path
	}
	cases := []tc{
		{name: "missing file", setup: func(*testing.T, string) {}, wants: []string{"no such file"}},
		{name: "directory", setup: func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, wants: []string{"is a directory"}},
		{name: "empty file", data: []byte{}, wants: []string{"truncated", "empty file"}},
		{name: "short magic", data: []byte("GG"), wants: []string{"truncated", "magic"}},
		{name: "not GGUF (text)", data: []byte("hello, this is a text file\n"), wants: []string{"bad magic", `"hell"`}},
		{name: "not GGUF (PNG)", data: []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), wants: []string{"bad magic"}},
		{name: "truncated in the header", data: good[:hdrTensorCount+3], wants: []string{"truncated", "header", "tensor count"}},
		{name: "truncated after the counts", data: good[:hdrEnd], wants: []string{"truncated", "header"}},
		{name: "truncated in the metadata", data: good[:longAt+len(longValue)/2], wants: []string{"truncated", `kv 3 of 4 "test.long"`}},
		{name: "truncated in the tensor infos", data: good[:strEnd(t, good, "t.b")-1], wants: []string{"truncated", "tensor info 1 of 3"}},
		{name: "truncated in the data", data: good[:f.DataOffset+int64(f.Tensors[1].Offset)+10], wants: []string{"truncated", `"t.b"`, "runs past the end"}},
		{name: "truncated in the last tensor", data: good[:lastEnd-2], wants: []string{"truncated", `"t.c"`, "runs past the end"}},
		{name: "version 1", data: put32(hdrVersion, 1), wants: []string{"unsupported version", "version 1"}},
		{name: "version 4", data: put32(hdrVersion, 4), wants: []string{"unsupported version", "version 4"}},
		{name: "big-endian", data: put32(hdrVersion, 3<<24), wants: []string{"unsupported version", "big-endian"}},
		{name: "absurd tensor count", data: put64(hdrTensorCount, 1<<40), wants: []string{"corrupt", fmt.Sprint(uint64(1 << 40)), "tensors"}},
		{name: "absurd kv count", data: put64(hdrKVCount, 1<<40), wants: []string{"corrupt", fmt.Sprint(uint64(1 << 40)), "keys"}},
		{name: "counts past the end", data: put64(hdrTensorCount, 1000), wants: []string{"truncated", "1000 tensor infos"}},
		{name: "absurd string length", data: put64(valuePos(t, good, "test.long"), math.MaxUint64), wants: []string{"corrupt", "string length"}},
		{name: "bool not 0 or 1", data: mod(func(b []byte) []byte { b[valuePos(t, b, "test.flag")] = 2; return b }), wants: []string{"corrupt", "bool value 2"}},
		{name: "unknown value type", data: put32(strEnd(t, good, "test.flag"), 99), wants: []string{"unknown type", "value type 99"}},
		{name: "tensor offset outside the file", data: put64(tensorOffsetPos(t, good, "t.c"), 1<<20), wants: []string{"corrupt", `"t.c"`, "outside the file"}},
		{name: "misaligned tensor offset", data: put64(tensorOffsetPos(t, good, "t.b"), f.Tensors[1].Offset+4), wants: []string{"corrupt", `"t.b"`, "alignment"}},
		{name: "overlapping tensors", data: put64(tensorOffsetPos(t, good, "t.c"), f.Tensors[1].Offset), wants: []string{"corrupt", "overlaps"}},
		{name: "unknown tensor type", data: put32(tensorTypePos(t, good, "t.b"), 99), wants: []string{"unknown type", "tensor type 99"}},
		{name: "removed tensor type Q4_2", data: put32(tensorTypePos(t, good, "t.b"), 4), wants: []string{"unknown type", "tensor type 4"}},
		{name: "zero dim", data: put64(strEnd(t, good, "t.a")+4, 0), wants: []string{"corrupt", "zero"}},
		{name: "five dims", data: put32(strEnd(t, good, "t.a"), 5), wants: []string{"corrupt", "5 dims"}},
		{name: "duplicate tensor name", data: mod(func(b []byte) []byte { copy(b[strEnd(t, b, "t.b")-3:], "t.a"); return b }), wants: []string{"corrupt", "duplicate tensor name"}},
	}

	// The unmodified file must pass, so that each failure below is the
	// corruption's doing.
	t.Run("valid", func(t *testing.T) {
		args := []string{"inspect", filepath.Join(dir, "good.gguf")}
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
	})

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, fmt.Sprintf("bad%02d.gguf", i))
			if c.setup != nil {
				c.setup(t, path)
			} else if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := run(t, "inspect", path)
			line := wantOneLineError(t, stdout, stderr, code, append([]string{path}, c.wants...)...)
			t.Log(line)
		})
	}
}

func TestInspectStories(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")

	t.Run("json", func(t *testing.T) {
		args := []string{"inspect", "--json", model}
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
		if stderr != "" {
			t.Errorf("stderr is not empty:\n%s", stderr)
		}
		var r struct {
			File         string  `json:"input"`
			Version      uint32  `json:"gguf_version"`
			Architecture string  `json:"architecture"`
			BlockCount   uint64  `json:"block_count"`
			Embedding    uint64  `json:"embedding_length"`
			HeadCount    uint64  `json:"head_count"`
			HeadCountKV  uint64  `json:"head_count_kv"`
			Vocab        uint64  `json:"vocab"`
			TensorCount  int     `json:"tensor_count"`
			Mergeable    bool    `json:"mergeable"`
			NotMergeable string  `json:"not_mergeable_reason"`
			Parameters   uint64  `json:"parameters"`
			BPW          float64 `json:"bits_per_weight"`
		}
		dec := json.NewDecoder(strings.NewReader(stdout))
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
		}
		if dec.More() {
			t.Errorf("stdout holds more than one JSON value")
		}
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"input", r.File, model},
			{"architecture", r.Architecture, "llama"},
			{"block_count", r.BlockCount, uint64(5)},
			{"embedding_length", r.Embedding, uint64(64)},
			{"head_count", r.HeadCount, uint64(8)},
			{"head_count_kv", r.HeadCountKV, uint64(4)},
			{"vocab", r.Vocab, uint64(512)},
			{"tensor_count", r.TensorCount, 48},
			{"mergeable", r.Mergeable, true},
			{"not_mergeable_reason", r.NotMergeable, ""},
		} {
			if c.got != c.want {
				t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
			}
		}
		if r.Version != 2 && r.Version != 3 {
			t.Errorf("gguf_version = %d", r.Version)
		}
		if r.Parameters == 0 || r.BPW <= 0 {
			t.Errorf("parameters %d, bits_per_weight %v", r.Parameters, r.BPW)
		}
	})

	t.Run("text", func(t *testing.T) {
		args := []string{"inspect", model}
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
		if stderr != "" {
			t.Errorf("stderr is not empty:\n%s", stderr)
		}
		found := false
		for _, l := range strings.Split(stdout, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "blocks" {
				found = true
				if f[1] != "5" {
					t.Errorf("blocks line %q, want 5 blocks", l)
				}
			}
		}
		if !found {
			t.Errorf("no \"blocks\" line in:\n%s", stdout)
		}
		if !strings.Contains(stdout, "mergeable") || !strings.Contains(stdout, "yes") {
			t.Errorf("no \"mergeable yes\" in:\n%s", stdout)
		}
	})

	t.Run("no argument", func(t *testing.T) {
		stdout, stderr, code := run(t, "inspect")
		wantOneLineError(t, stdout, stderr, code, "want one MODEL.gguf, got no arguments")
	})

	t.Run("merge with one argument", func(t *testing.T) {
		stdout, stderr, code := run(t, "merge", model)
		wantOneLineError(t, stdout, stderr, code, "want IN.gguf OUT.gguf, got 1 argument (")
	})
}

func TestEvalBadInput(t *testing.T) {
	dir := t.TempDir()
	model := shared.Model(t, "stories260K.gguf")

	short := filepath.Join(dir, "short.txt")
	if err := os.WriteFile(short, []byte("Once upon a time there was a cat.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notGGUF := filepath.Join(dir, "model.gguf")
	if err := os.WriteFile(notGGUF, []byte("this is not a model at all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	modelData := readFile(t, model)
	truncated := filepath.Join(dir, "truncated.gguf")
	if err := os.WriteFile(truncated, modelData[:len(modelData)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.txt")

	for _, c := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"missing text file", []string{"eval", model, "--text", missing}, []string{missing, "no such file"}},
		{"no --text", []string{"eval", model}, []string{`"text"`}},
		{"missing model", []string{"eval", filepath.Join(dir, "none.gguf"), "--text", short}, []string{filepath.Join(dir, "none.gguf"), "no such file"}},
		{"non-GGUF model", []string{"eval", notGGUF, "--text", short}, []string{notGGUF, "magic", `"this"`}},
		{"model is a directory", []string{"eval", dir, "--text", short}, []string{dir, "directory"}},
		// gguf.Open finds this before llama.cpp, which would log its own
		// lines and say only that it could not load the model.
		{"truncated model", []string{"eval", truncated, "--text", short}, []string{truncated, "truncated"}},
		{"text too short", []string{"eval", model, "--text", short, "--ctx", "64"}, []string{short, "too little text", "tokens", "need at least 64"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := run(t, c.args...)
			t.Log(wantOneLineError(t, stdout, stderr, code, c.wants...))
		})
	}
}
