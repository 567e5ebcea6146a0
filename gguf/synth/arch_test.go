package synth

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// TestArchConfigErrors checks the configurations an architecture cannot
// hold: an output layer it cannot load, rope_freqs where its graph has no
// RoPE factors, a negative window.
func TestArchConfigErrors(t *testing.T) {
	for _, c := range []struct {
		arch string
		mod  func(*Config)
		want string
	}{
		{"gemma", func(c *Config) { c.TiedEmbeddings = false }, "TiedEmbeddings"},
		{"gemma2", func(c *Config) { c.TiedEmbeddings = false }, "TiedEmbeddings"},
		{"olmo2", func(c *Config) { c.TiedEmbeddings = true }, "output.weight"},
		{"internlm2", func(c *Config) { c.TiedEmbeddings = true }, "output.weight"},
		{"qwen2", func(c *Config) { c.RopeFreqs = true }, "rope_freqs"},
		{"phi3", func(c *Config) { c.RopeFreqs = true }, "rope_freqs"},
		{"gemma2", func(c *Config) { c.TiedEmbeddings, c.SlidingWindow = true, -1 }, "SlidingWindow"},
		{"mistral", func(*Config) {}, "want one of"},
	} {
		cfg := small(c.arch, gguf.TypeF32, false)
		c.mod(&cfg)
		path := filepath.Join(t.TempDir(), "x.gguf")
		if err := Write(path, cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %s", c.arch, err, c.want)
		}
	}
}

// TestRopeFreqs checks Llama 3.1's RoPE factors for its own shape (head
// size 128, base 500000): 1 for the fast dimensions, 8 for the slow ones,
// a monotone ramp between, and the tensor in a file.
func TestRopeFreqs(t *testing.T) {
	f := llama3RopeFactors(128, 500000)
	if len(f) != 64 || f[0] != 1 || f[63] != 8 {
		t.Fatalf("%d factors, first %v last %v", len(f), f[0], f[len(f)-1])
	}
	ramp := 0
	for i := 1; i < len(f); i++ {
		if f[i] < f[i-1] {
			t.Fatalf("factor %d (%v) below factor %d (%v)", i, f[i], i-1, f[i-1])
		}
		if f[i] > 1 && f[i] < 8 {
			ramp++
		}
	}
	// Wavelengths 2048 to 8192 tokens: dimensions 2i/128 of log_500000
	// between log(2048/2π) and log(8192/2π), about 7 of the 64.
	if ramp < 4 || ramp > 10 {
		t.Errorf("%d factors between 1 and 8: %v", ramp, f)
	}
	cfg := small("llama", gguf.TypeF16, false)
	cfg.RopeFreqs, cfg.RopeBase = true, 500000
	checkModel(t, cfg)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := readFloats(t, m, "rope_freqs.weight")
	want := llama3RopeFactors(cfg.Embd/cfg.Heads, 500000)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("rope_freqs[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if b, _ := m.Float("llama.rope.freq_base"); b != 500000 {
		t.Errorf("rope.freq_base %v", b)
	}
}

// TestLlama3Vocab checks that a Llama 3 sized vocabulary (128,256 tokens)
// can be generated.
func TestLlama3Vocab(t *testing.T) {
	if maxVocab(false) < 128256 || maxVocab(true) < 128256 {
		t.Fatalf("largest vocabularies %d and %d", maxVocab(false), maxVocab(true))
	}
	tokens, _, _ := vocab(128256, false)
	seen := map[string]bool{}
	for _, s := range tokens {
		if seen[s] {
			t.Fatalf("duplicate token %q", s)
		}
		seen[s] = true
	}
}
