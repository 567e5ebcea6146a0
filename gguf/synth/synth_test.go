package synth

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
)

func small(arch string, typ gguf.Type, tied bool) Config {
	c := Tiny()
	c.Arch, c.Type, c.TiedEmbeddings = arch, typ, tied
	c.Blocks = 2
	return c
}

// tiedChoices are the output layouts an architecture allows.
func tiedChoices(arch string) []bool {
	switch arch {
	case "gemma", "gemma2":
		return []bool{true}
	case "olmo2", "internlm2":
		return []bool{false}
	}
	return []bool{false, true}
}

func TestWrite(t *testing.T) {
	for _, arch := range Archs() {
		types := []gguf.Type{gguf.TypeF32, gguf.TypeF16}
		if arch == "llama" || arch == "qwen2" || arch == "qwen3" {
			types = append(types, gguf.TypeBF16)
		}
		for _, typ := range types {
			for _, tied := range tiedChoices(arch) {
				cfg := small(arch, typ, tied)
				t.Run(fmt.Sprintf("%s-%s-tied=%v", arch, typ, tied), func(t *testing.T) { checkModel(t, cfg) })
			}
		}
	}
	if len(Archs()) != 12 {
		t.Errorf("archs %v", Archs())
	}
}

// blockLayout is each architecture's block as llama.cpp's load_tensors
// (llama-model.cpp) creates it, transcribed by hand: shapes in terms of e
// (embedding length = heads × head size), kv (KV heads × head size), hd
// (head size) and f (feed-forward length).
func blockLayout(arch string, e, kv, hd, f uint64) map[string][]uint64 {
	llama := map[string][]uint64{"attn_norm.weight": {e}, "attn_q.weight": {e, e}, "attn_k.weight": {e, kv},
		"attn_v.weight": {e, kv}, "attn_output.weight": {e, e}, "ffn_norm.weight": {e}, "ffn_gate.weight": {e, f},
		"ffn_down.weight": {f, e}, "ffn_up.weight": {e, f}}
	type layout = map[string][]uint64
	with := func(add []layout, drop ...string) layout {
		out := maps.Clone(llama)
		for _, a := range add {
			maps.Copy(out, a)
		}
		for _, d := range drop {
			delete(out, d)
		}
		return out
	}
	post := layout{"post_attention_norm.weight": {e}, "post_ffw_norm.weight": {e}}
	headNorms := layout{"attn_q_norm.weight": {hd}, "attn_k_norm.weight": {hd}}
	switch arch {
	case "qwen2":
		return with([]layout{{"attn_q.bias": {e}, "attn_k.bias": {kv}, "attn_v.bias": {kv}}})
	case "qwen3":
		return with([]layout{headNorms})
	case "phi3":
		return with([]layout{{"attn_qkv.weight": {e, e + 2*kv}, "ffn_up.weight": {e, 2 * f}}},
			"attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_gate.weight")
	case "gemma2":
		return with([]layout{post})
	case "gemma3":
		return with([]layout{post, headNorms})
	case "olmo2":
		return with([]layout{post, {"attn_q_norm.weight": {e}, "attn_k_norm.weight": {kv}}}, "attn_norm.weight", "ffn_norm.weight")
	}
	return llama // llama, gemma, granite, smollm3, internlm2, exaone
}

// archKeys are the metadata an architecture needs beyond the common keys,
// with their values.
func archKeys(cfg Config) map[string]float64 {
	switch cfg.Arch {
	case "gemma2":
		return map[string]float64{"attention.sliding_window": DefaultSlidingWindow, "attn_logit_softcapping": 50, "final_logit_softcapping": 30}
	case "gemma3":
		return map[string]float64{"attention.sliding_window": DefaultSlidingWindow, "rope.freq_base": 1e6}
	case "granite":
		return map[string]float64{"logit_scale": 8, "residual_scale": float64(float32(0.22)), "embedding_scale": 12,
			"attention.scale": 1 / float64(cfg.Embd/cfg.Heads)}
	}
	return map[string]float64{"rope.freq_base": float64(cmp.Or(cfg.RopeBase, 10000))}
}

func checkModel(t *testing.T, cfg Config) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Size != Size(cfg) {
		t.Errorf("file is %d bytes, Size says %d", f.Size, Size(cfg))
	}
	if f.Version != 3 || f.Alignment != 32 || f.Arch() != cfg.Arch {
		t.Errorf("v%d align %d arch %q", f.Version, f.Alignment, f.Arch())
	}
	if _, ok := f.KV("general.alignment"); ok {
		t.Error("general.alignment written")
	}
	a := cfg.Arch
	hd := cfg.Embd / cfg.Heads
	for key, want := range map[string]uint64{
		"general.file_type": uint64(fileType(cfg.Type)), a + ".block_count": uint64(cfg.Blocks),
		a + ".context_length": uint64(cfg.Ctx), a + ".embedding_length": uint64(cfg.Embd),
		a + ".feed_forward_length": uint64(cfg.FFN), a + ".attention.head_count": uint64(cfg.Heads),
		a + ".attention.head_count_kv": uint64(cfg.KVHeads), a + ".rope.dimension_count": uint64(hd),
		"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
	} {
		if v, ok := f.Uint(key); !ok || v != want {
			t.Errorf("%s = %d (%v), want %d", key, v, ok, want)
		}
	}
	if v, _ := f.Float(a + ".attention.layer_norm_rms_epsilon"); float32(v) != 1e-5 {
		t.Errorf("rms epsilon %v", v)
	}
	for key, want := range archKeys(cfg) {
		if v, ok := f.Float(a + "." + key); !ok || float32(v) != float32(want) {
			t.Errorf("%s = %v (%v), want %v", key, v, ok, want)
		}
	}
	if name, _ := f.String("general.name"); strings.Contains(name, "phi3") {
		t.Errorf("general.name %q holds phi3: llama.cpp then looks for Phi-3's special tokens", name)
	}
	kv, _ := f.KV("tokenizer.ggml.tokens")
	tokens := kv.Value.V.(gguf.Array).Values.([]string)
	// Token 3+0x41 is the byte <0x41>, or, without byte fallback, plain
	// character 65: after tab, newline and CR, '!'+62 = '_'.
	byte41 := "<0x41>"
	if cfg.NoByteFallback {
		byte41 = "_"
	}
	if len(tokens) != cfg.Vocab || tokens[0] != "<unk>" || tokens[1] != "<s>" || tokens[2] != "</s>" || tokens[3+0x41] != byte41 {
		t.Errorf("tokens: %d, %q", len(tokens), tokens[:4])
	}

	// Tensor list: exactly the names and shapes llama.cpp loads.
	e, v, kvd := uint64(cfg.Embd), uint64(cfg.Vocab), uint64(hd*cfg.KVHeads)
	shapes := map[string][]uint64{"token_embd.weight": {e, v}, "output_norm.weight": {e}}
	if !cfg.TiedEmbeddings {
		shapes["output.weight"] = []uint64{e, v}
	}
	if cfg.RopeFreqs {
		shapes["rope_freqs.weight"] = []uint64{uint64(hd / 2)}
	}
	for b := range cfg.Blocks {
		for name, dims := range blockLayout(a, e, kvd, uint64(hd), uint64(cfg.FFN)) {
			shapes[fmt.Sprintf("blk.%d.%s", b, name)] = dims
		}
	}
	if len(f.Tensors) != len(shapes) {
		t.Errorf("%d tensors, want %d", len(f.Tensors), len(shapes))
	}
	for _, ti := range f.Tensors {
		dims, ok := shapes[ti.Name]
		wantType := cfg.Type
		if len(dims) == 1 {
			wantType = gguf.TypeF32
		}
		if !ok || !reflect.DeepEqual(ti.Dims, dims) || ti.Type != wantType {
			t.Errorf("%s: %v %s, want %v %s (expected: %v)", ti.Name, ti.Dims, ti.Type, dims, wantType, ok)
		}
	}

	// Data: norms are 1, weights have mean ~0 and std ~0.02.
	normName := "blk.0.attn_norm.weight"
	if a == "olmo2" {
		normName = "blk.0.post_ffw_norm.weight"
	}
	for _, x := range readFloats(t, f, normName) {
		if x != 1 {
			t.Fatalf("norm value %v", x)
		}
	}
	w := readFloats(t, f, "token_embd.weight")
	var sum, sq float64
	for _, x := range w {
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	mean := sum / float64(len(w))
	std := math.Sqrt(sq/float64(len(w)) - mean*mean)
	if math.Abs(mean) > 0.001 || math.Abs(std-weightStd) > 0.001 {
		t.Errorf("token_embd mean %v std %v", mean, std)
	}
}

// readFloats decodes a tensor of F32, F16 or BF16 values.
func readFloats(t *testing.T, f *gguf.File, name string) []float32 {
	i, _ := f.Tensor(name)
	b, err := io.ReadAll(f.TensorReader(i))
	if err != nil {
		t.Fatal(err)
	}
	var out []float32
	switch f.Tensors[i].Type {
	case gguf.TypeF32:
		for j := 0; j < len(b); j += 4 {
			out = append(out, math.Float32frombits(uint32(b[j])|uint32(b[j+1])<<8|uint32(b[j+2])<<16|uint32(b[j+3])<<24))
		}
	case gguf.TypeF16:
		for j := 0; j < len(b); j += 2 {
			out = append(out, halfToFloat(uint16(b[j])|uint16(b[j+1])<<8))
		}
	case gguf.TypeBF16:
		for j := 0; j < len(b); j += 2 {
			out = append(out, math.Float32frombits(uint32(b[j])<<16|uint32(b[j+1])<<24))
		}
	}
	return out
}

// halfToFloat decodes an IEEE half exactly.
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * float32(math.Ldexp(mant, -24))
	case 0x1f:
		if mant != 0 {
			return float32(math.NaN())
		}
		return sign * float32(math.Inf(1))
	}
	return sign * float32(math.Ldexp(1024+mant, exp-25))
}

func hashFile(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	cfg := small("qwen2", gguf.TypeF16, false)
	cfg.Embd, cfg.FFN = 128, 512 // several generation chunks per tensor
	p1, p2, p3 := filepath.Join(dir, "1.gguf"), filepath.Join(dir, "2.gguf"), filepath.Join(dir, "3.gguf")
	if err := Write(p1, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Write(p2, cfg); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, p1) != hashFile(t, p2) {
		t.Fatal("same config, different files")
	}
	cfg.Seed++
	if err := Write(p3, cfg); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, p1) == hashFile(t, p3) {
		t.Fatal("different seeds, same file")
	}
}

func TestBadConfig(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"arch":         func(c *Config) { c.Arch = "gpt2" },
		"blocks":       func(c *Config) { c.Blocks = 0 },
		"heads":        func(c *Config) { c.Heads = 3 },
		"odd head dim": func(c *Config) { c.Embd, c.Heads, c.KVHeads = 24, 8, 2 },
		"kv heads":     func(c *Config) { c.KVHeads = 3 },
		"vocab small":  func(c *Config) { c.Vocab = 100 },
		"vocab large":  func(c *Config) { c.Vocab = 1 << 20 },
		"type":         func(c *Config) { c.Type = gguf.TypeQ4_K },
	} {
		c := Tiny()
		mod(&c)
		path := filepath.Join(t.TempDir(), "x.gguf")
		err := Write(path, c)
		if err == nil || !strings.HasPrefix(err.Error(), "synth: ") {
			t.Errorf("%s: %v", name, err)
		}
		if Size(c) != -1 {
			t.Errorf("%s: Size %d", name, Size(c))
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s: left a file", name)
		}
	}
	c := Tiny()
	c.Arch = ""
	if Size(c) != Size(Tiny()) {
		t.Error("empty Arch is not llama")
	}
}

func TestPreset(t *testing.T) {
	if c, err := Preset("tiny"); err != nil || c != Tiny() {
		t.Errorf("tiny: %+v %v", c, err)
	}
	c, err := Preset("1gb")
	if err != nil {
		t.Fatal(err)
	}
	if s := float64(Size(c)) / (1 << 30); s < 0.95 || s > 1.1 {
		t.Errorf("1gb preset is %.3f GiB", s)
	}
	if _, err := Preset("huge"); err == nil {
		t.Error("unknown preset accepted")
	}
}

func TestVocab(t *testing.T) {
	tokens, scores, types := vocab(maxVocab(false), false)
	seen := map[string]bool{}
	for i, s := range tokens {
		if seen[s] {
			t.Fatalf("duplicate token %q", s)
		}
		seen[s] = true
		if i > 259 && scores[i] >= scores[i-1] {
			t.Fatalf("scores not decreasing at %d", i)
		}
	}
	if types[0] != tokenUnknown || types[1] != tokenControl || types[2] != tokenControl || types[3] != tokenByte || types[258] != tokenByte || types[259] != tokenNormal {
		t.Error("token types")
	}
	if tokens[259] != "▁" || tokens[260] != "▁a" {
		t.Errorf("first normal tokens %q", tokens[259:261])
	}
	if maxVocab(false) < 32000 {
		t.Errorf("max vocab %d", maxVocab(false))
	}
}

// TestVocabNoByteFallback checks the vocabulary without byte tokens at its
// smallest and largest: no <0xNN> token, every ASCII character a token of
// its own, no non-ASCII character anywhere except the SentencePiece space
// "▁", no duplicates, and the requested size.
func TestVocabNoByteFallback(t *testing.T) {
	for _, n := range []int{MinVocab, maxVocab(true)} {
		tokens, scores, types := vocab(n, true)
		if len(tokens) != n || len(scores) != n || len(types) != n {
			t.Fatalf("vocab(%d): %d tokens, %d scores, %d types", n, len(tokens), len(scores), len(types))
		}
		seen := map[string]bool{}
		for i, s := range tokens {
			if seen[s] {
				t.Fatalf("vocab(%d): duplicate token %q", n, s)
			}
			seen[s] = true
			if types[i] == tokenByte || strings.HasPrefix(s, "<0x") {
				t.Fatalf("vocab(%d): byte token %q (type %d) at %d", n, s, types[i], i)
			}
			for _, r := range strings.ReplaceAll(s, "▁", "") {
				if r > 0x7e {
					t.Fatalf("vocab(%d): token %q holds non-ASCII %q", n, s, r)
				}
			}
		}
		for c := byte('!'); c <= '~'; c++ {
			if !seen[string(c)] {
				t.Fatalf("vocab(%d): no token for %q", n, c)
			}
		}
		if !seen["\n"] || !seen["\t"] || !seen["▁"] || !seen["▁the"] {
			t.Fatalf("vocab(%d): newline, tab, ▁ or ▁the missing", n)
		}
	}
	if maxVocab(true) >= maxVocab(false) || maxVocab(true) < 32000 {
		t.Errorf("max vocab %d without byte fallback, %d with", maxVocab(true), maxVocab(false))
	}
	cfg := small("llama", gguf.TypeF32, false)
	cfg.NoByteFallback = true
	checkModel(t, cfg)
	cfg.Vocab = maxVocab(true) + 1
	if err := Write(filepath.Join(t.TempDir(), "m.gguf"), cfg); err == nil {
		t.Error("a vocabulary larger than the candidates was accepted")
	}
}
