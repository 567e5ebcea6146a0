package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// analyzeJSON is the part of analyze's --json output the tests check.
type analyzeJSON struct {
	Input       string `json:"input"`
	InputSHA256 string `json:"input_sha256"`
	Calibration struct {
		Path    string `json:"path"`
		Samples int    `json:"samples"`
		Ctx     int    `json:"ctx"`
		Seed    uint64 `json:"seed"`
		Tokens  int    `json:"tokens"`
	} `json:"calibration"`
	Arch     string `json:"arch"`
	Blocks   int    `json:"blocks"`
	Embd     int    `json:"embd"`
	Analysis struct {
		Blocks  int         `json:"blocks"`
		Layers  []string    `json:"layers"`
		NPIB    [][]float64 `json:"npib"`
		CKA     [][]float64 `json:"cka"`
		Angular [][]float64 `json:"angular"`
		BI      []float64   `json:"block_influence"`
	} `json:"analysis"`
}

const (
	analyzeSamples = 32
	analyzeCtx     = 64
)

// analyzeRun runs analyze on model with the train text, writing name.json
// and name.png in dir, and returns the JSON's bytes.
func analyzeRun(t *testing.T, model, calib, dir, name string, seed int) []byte {
	t.Helper()
	js, img := filepath.Join(dir, name+".json"), filepath.Join(dir, name+".png")
	args := []string{"-q", "analyze", model, "--calib", calib,
		"--samples", fmt.Sprint(analyzeSamples), "--ctx", fmt.Sprint(analyzeCtx), "--seed", fmt.Sprint(seed),
		"--json-file", js, "--heatmap", img}
	stdout, stderr, code := run(t, args...)
	wantOK(t, args, stdout, stderr, code)
	if stderr != "" {
		t.Errorf("stderr is not empty with -q:\n%s", stderr)
	}
	if !strings.Contains(stdout, "5 blocks") || !strings.Contains(stdout, "blk.0 + blk.1") {
		t.Errorf("stdout lacks the summary and ranked pairs:\n%s", stdout)
	}
	b := readFile(t, js)
	return b
}

// diffLines returns the lines of a and b that differ, for messages.
func diffLines(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	var out []string
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("line %d: %q vs %q", i+1, strings.TrimSpace(x), strings.TrimSpace(y)))
		}
		if len(out) == 10 {
			break
		}
	}
	return strings.Join(out, "\n")
}

func TestAnalyzeDeterministic(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")
	calib := shared.Path(t, "data/tinystories-train.txt")
	dir := t.TempDir()

	// The three runs are independent; run them side by side.
	var a, b, c []byte
	t.Run("runs", func(t *testing.T) {
		for _, r := range []struct {
			name string
			seed int
			out  *[]byte
		}{{"a", 7, &a}, {"b", 7, &b}, {"c", 8, &c}} {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				*r.out = analyzeRun(t, model, calib, dir, r.name, r.seed)
			})
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	if !bytes.Equal(a, b) {
		t.Errorf("two runs with --seed 7 wrote different JSON:\n%s", diffLines(a, b))
	}

	var ra, rb, rc analyzeJSON
	for _, x := range []struct {
		data []byte
		r    *analyzeJSON
	}{{a, &ra}, {b, &rb}, {c, &rc}} {
		if err := json.Unmarshal(x.data, x.r); err != nil {
			t.Fatalf("bad JSON: %v\n%s", err, x.data)
		}
	}

	// Same seed: the same numbers, whatever else differs.
	for _, m := range []struct {
		name string
		x, y [][]float64
	}{{"npib", ra.Analysis.NPIB, rb.Analysis.NPIB}, {"cka", ra.Analysis.CKA, rb.Analysis.CKA}, {"angular", ra.Analysis.Angular, rb.Analysis.Angular}} {
		if !equalMatrix(m.x, m.y) {
			t.Errorf("%s differs between two runs with the same seed", m.name)
		}
	}
	// Another seed draws other text, so other matrices.
	if equalMatrix(ra.Analysis.NPIB, rc.Analysis.NPIB) {
		t.Errorf("--seed 7 and --seed 8 give the same NPIB matrix")
	}
	if equalMatrix(ra.Analysis.CKA, rc.Analysis.CKA) {
		t.Errorf("--seed 7 and --seed 8 give the same CKA matrix")
	}
	if rc.Calibration.Seed != 8 {
		t.Errorf("calibration.seed = %d, want 8", rc.Calibration.Seed)
	}

	sum := sha256.Sum256(readFile(t, model))
	r := ra
	if r.InputSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("input_sha256 = %s, want %x", r.InputSHA256, sum)
	}
	if r.Input != model {
		t.Errorf("input = %q, want %q", r.Input, model)
	}
	if r.Calibration.Path != calib {
		t.Errorf("calibration.path = %q, want %q", r.Calibration.Path, calib)
	}
	s := r.Calibration
	if s.Samples != analyzeSamples || s.Ctx != analyzeCtx || s.Seed != 7 {
		t.Errorf("calibration samples %d, ctx %d, seed %d; want %d, %d, 7", s.Samples, s.Ctx, s.Seed, analyzeSamples, analyzeCtx)
	}
	if r.Arch != "llama" || r.Blocks != 5 || r.Embd != 64 {
		t.Errorf("arch %q, blocks %d, embd %d; want llama, 5, 64", r.Arch, r.Blocks, r.Embd)
	}
	if s.Tokens != analyzeSamples*analyzeCtx {
		t.Errorf("calibration.tokens = %d, want %d", s.Tokens, analyzeSamples*analyzeCtx)
	}

	an := r.Analysis
	const n = 6 // the input and the outputs of 5 blocks
	if an.Blocks != 5 {
		t.Errorf("analysis.blocks = %d, want 5", an.Blocks)
	}
	if want := []string{"input", "blk.0", "blk.1", "blk.2", "blk.3", "blk.4"}; strings.Join(an.Layers, ",") != strings.Join(want, ",") {
		t.Errorf("layers = %v, want %v", an.Layers, want)
	}
	for _, m := range []struct {
		name string
		m    [][]float64
		diag float64
		tol  float64
	}{
		{"npib", an.NPIB, 1, 1e-9},
		{"cka", an.CKA, 1, 1e-9},
		{"angular", an.Angular, 0, 1e-6},
	} {
		checkMatrix(t, m.name, m.m, n, m.diag, m.tol)
	}
	if len(an.BI) != 5 {
		t.Errorf("block_influence has %d values, want 5", len(an.BI))
	}
	for i, v := range an.BI {
		if !(v > 0 && v < 1) {
			t.Errorf("block_influence[%d] = %v, want in (0, 1)", i, v)
		}
	}

	// The heatmap.
	img := readFile(t, filepath.Join(dir, "a.png"))
	if !bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("a.png does not start with the PNG signature: % x", img[:min(8, len(img))])
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("a.png: %v", err)
	}
	if cfg.Width < 400 || cfg.Height < 300 {
		t.Errorf("a.png is %d×%d, want at least 400×300", cfg.Width, cfg.Height)
	}
	if _, err := png.Decode(bytes.NewReader(img)); err != nil {
		t.Errorf("a.png does not decode: %v", err)
	}
}

// checkMatrix checks an n×n symmetric matrix of values in [0, 1] whose
// diagonal is diag within tol.
func checkMatrix(t *testing.T, name string, m [][]float64, n int, diag, tol float64) {
	t.Helper()
	if len(m) != n {
		t.Errorf("%s has %d rows, want %d", name, len(m), n)
		return
	}
	for i, row := range m {
		if len(row) != n {
			t.Errorf("%s row %d has %d values, want %d", name, i, len(row), n)
			return
		}
	}
	for i := range n {
		for j := range n {
			v := m[i][j]
			if !(v >= 0 && v <= 1) {
				t.Errorf("%s[%d][%d] = %v, want in [0, 1]", name, i, j, v)
			}
			if math.Abs(v-m[j][i]) > 1e-9 {
				t.Errorf("%s is not symmetric: [%d][%d] = %v, [%d][%d] = %v", name, i, j, v, j, i, m[j][i])
			}
		}
		if math.Abs(m[i][i]-diag) > tol {
			t.Errorf("%s[%d][%d] = %v, want %v", name, i, i, m[i][i], diag)
		}
	}
}

func equalMatrix(a, b [][]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

func TestAnalyzeTooShort(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")
	dir := t.TempDir()
	text := filepath.Join(dir, "tiny.txt")
	if err := os.WriteFile(text, []byte("Once upon a time there was a little cat.\n\nThe cat liked to play.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(dir, "out.json")
	stdout, stderr, code := run(t, "analyze", model, "--calib", text, "--samples", "32", "--ctx", "64", "--json-file", js)
	// The model adds a BOS, so each sample takes ctx-1 = 63 text tokens.
	line := wantOneLineError(t, stdout, stderr, code, text, "too little calibration text", "tokens", fmt.Sprintf("need %d", 32*63))
	t.Log(line)
	// "N tokens" with the count of the text.
	var have int
	if i := strings.Index(line, "calibration text: "); i < 0 {
		t.Errorf("no token count in %q", line)
	} else if _, err := fmt.Sscanf(line[i+len("calibration text: "):], "%d tokens", &have); err != nil || have <= 0 || have >= 32*63 {
		t.Errorf("token count in %q: %d, %v", line, have, err)
	}
	if _, err := os.Stat(js); err == nil {
		t.Errorf("a failed analyze wrote %s", js)
	}
}

func TestAnalyzeRefusesUnsupportedArch(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "llama.gguf")
	cfg := synth.Tiny()
	cfg.Blocks = 2
	if err := synth.Write(src, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	for _, c := range []struct {
		arch   string
		reason string
	}{
		{"mamba", "recurrent"},
		{"cohere2", "sliding-window"},
	} {
		t.Run(c.arch, func(t *testing.T) {
			path := filepath.Join(dir, c.arch+".gguf")
			e := f.Edit()
			e.SetKV(gguf.KV{Key: "general.architecture", Value: gguf.String(c.arch)})
			if err := e.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			js := filepath.Join(dir, c.arch+".json")
			stdout, stderr, code := run(t, "analyze", path, "--samples", "8", "--ctx", "16", "--json-file", js)
			t.Log(wantOneLineError(t, stdout, stderr, code, path, `"`+c.arch+`"`, "unsupported", c.reason))
			if _, err := os.Stat(js); err == nil {
				t.Errorf("a refused analyze wrote %s", js)
			}
		})
	}

	// The unedited model is accepted (so the refusals are the
	// architecture's doing); a quick run on the built-in text.
	t.Run("llama", func(t *testing.T) {
		args := []string{"-q", "analyze", src, "--samples", "8", "--ctx", "16"}
		stdout, stderr, code := run(t, args...)
		wantOK(t, args, stdout, stderr, code)
	})
}
