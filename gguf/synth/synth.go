// Package synth generates GGUF models with random weights that stock
// llama.cpp loads: for tests, benchmarks and demos on a fresh clone,
// without downloading a model. Represent rewrites a trained llama model as
// another architecture computing the same function.
//
// The models have llama.cpp's exact tensor names and shapes and the
// metadata it needs for each architecture of Archs (llama with Llama 3's
// options, qwen2, qwen3, phi3, gemma, gemma2, gemma3, granite, olmo2,
// smollm3, internlm2, exaone), and a small SentencePiece-style tokenizer
// (byte fallback plus English words; Config.NoByteFallback leaves the byte
// tokens out). Norm weights are 1 (gemma's converter stores 1 + the
// checkpoint's weight, so 1 is its neutral norm too); weights and biases
// are drawn from N(0, 0.02²) with a
// deterministic generator seeded by Config.Seed and the tensor name, so a
// config always gives the same bytes. Data is generated while it is written:
// a 1 GB model needs no 1 GB buffer.
package synth

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// Config describes a model to generate.
type Config struct {
	// Arch is one of Archs; empty means "llama".
	Arch string
	// Blocks is the number of decoder blocks.
	Blocks int
	// Embd is the embedding length; it must be a multiple of Heads, with an
	// even head size Embd/Heads.
	Embd int
	// FFN is the feed-forward length.
	FFN int
	// Heads and KVHeads are the attention and key/value head counts; Heads
	// must be a multiple of KVHeads.
	Heads, KVHeads int
	// Vocab is the vocabulary size, at least MinVocab.
	Vocab int
	// Ctx is the training context length written to the metadata.
	Ctx int
	// Type is the type of the 2-D weights: gguf.TypeF32, TypeF16 or TypeBF16.
	// Norms and biases are always F32.
	Type gguf.Type
	// Seed selects the random weights.
	Seed int64
	// TiedEmbeddings omits output.weight; llama.cpp then uses token_embd.
	// gemma and gemma2 need it, olmo2 and internlm2 refuse it.
	TiedEmbeddings bool
	// RopeFreqs adds Llama 3.1's rope_freqs.weight (llama and exaone).
	RopeFreqs bool
	// RopeBase is rope.freq_base; 0 takes the architecture's usual one
	// (10000; gemma3 1e6, whose sliding-window blocks use 10000).
	RopeBase float32
	// SlidingWindow is gemma2's and gemma3's attention window in tokens;
	// 0 means DefaultSlidingWindow. olmo2 has one (OLMo 3) only when it is
	// set.
	SlidingWindow int
	// NoByteFallback writes a vocabulary without the 256 byte tokens
	// <0x00>..<0xFF>: it holds tab, newline and printable ASCII as single
	// characters instead, so ASCII text tokenizes and any other character
	// (é, ü, an emoji) cannot be encoded: llama.cpp's tokenizer throws
	// std::out_of_range on it. For testing that failure.
	NoByteFallback bool
}

// SetArch makes c a model of architecture a, tied to the token embedding
// where a has no output.weight (gemma, gemma2) and untied where it needs
// one (olmo2, internlm2).
func (c *Config) SetArch(a string) {
	c.Arch = a
	switch archs[a].output {
	case tiedOnly:
		c.TiedEmbeddings = true
	case untiedOnly:
		c.TiedEmbeddings = false
	}
}

// MinVocab is the smallest vocabulary: 3 special tokens, 256 byte tokens,
// "▁" and the 26 letters with "▁".
const MinVocab = 3 + 256 + 27

// Tiny returns a small F32 llama config (4 blocks, embd 64, vocab 512) that
// writes a file of about 1 MB.
func Tiny() Config {
	return Config{Arch: "llama", Blocks: 4, Embd: 64, FFN: 160, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 256, Type: gguf.TypeF32, Seed: 1}
}

// Preset returns a named config: "tiny" (see Tiny) or "1gb", an F16 llama
// model of 9 blocks, embd 2048, ffn 5632, 16 heads, 4 KV heads and a 32000
// token vocabulary, about 1.07 GB.
func Preset(name string) (Config, error) {
	switch name {
	case "tiny":
		return Tiny(), nil
	case "1gb":
		return Config{Arch: "llama", Blocks: 9, Embd: 2048, FFN: 5632, Heads: 16, KVHeads: 4, Vocab: 32000, Ctx: 2048, Type: gguf.TypeF16, Seed: 1}, nil
	}
	return Config{}, fmt.Errorf("synth: unknown preset %q (want tiny or 1gb)", name)
}

func (c *Config) check() error {
	if c.Arch == "" {
		c.Arch = "llama"
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, why := range c.checkArch() {
		bad("%s", why)
	}
	if c.SlidingWindow < 0 {
		bad("SlidingWindow %d, want 0 or more", c.SlidingWindow)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"Blocks", c.Blocks}, {"Embd", c.Embd}, {"FFN", c.FFN}, {"Heads", c.Heads}, {"KVHeads", c.KVHeads}, {"Ctx", c.Ctx}} {
		if f.v < 1 {
			bad("%s %d, want at least 1", f.name, f.v)
		}
	}
	if len(errs) == 0 {
		if c.Embd%c.Heads != 0 || (c.Embd/c.Heads)%2 != 0 {
			bad("Embd %d must be Heads %d times an even head size", c.Embd, c.Heads)
		}
		if c.Heads%c.KVHeads != 0 {
			bad("Heads %d must be a multiple of KVHeads %d", c.Heads, c.KVHeads)
		}
	}
	if hi := maxVocab(c.NoByteFallback); c.Vocab < MinVocab || c.Vocab > hi {
		bad("Vocab %d, want %d to %d", c.Vocab, MinVocab, hi)
	}
	switch c.Type {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
	default:
		bad("Type %s, want F32, F16 or BF16", c.Type)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("synth: bad config: %w", err)
	}
	return nil
}

// fileType returns llama.cpp's LLAMA_FTYPE for the weight type.
func fileType(t gguf.Type) uint32 {
	switch t {
	case gguf.TypeF16:
		return 1 // LLAMA_FTYPE_MOSTLY_F16
	case gguf.TypeBF16:
		return 32 // LLAMA_FTYPE_MOSTLY_BF16
	}
	return 0 // LLAMA_FTYPE_ALL_F32
}

// kvs returns the metadata in the order written.
func (c Config) kvs() []gguf.KV {
	a := c.Arch
	tokens, scores, types := vocab(c.Vocab, c.NoByteFallback)
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: gguf.String(a)},
		{Key: "general.name", Value: gguf.String(fmt.Sprintf("synth-%s-%dx%d", cmp.Or(archs[a].name, a), c.Blocks, c.Embd))},
		{Key: "general.file_type", Value: gguf.Uint32(fileType(c.Type))},
	}
	return append(append(kvs, c.archKVs()...), []gguf.KV{
		{Key: "tokenizer.ggml.model", Value: gguf.String("llama")},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Strings(tokens)},
		{Key: "tokenizer.ggml.scores", Value: gguf.Float32s(scores)},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Int32s(types)},
		{Key: "tokenizer.ggml.bos_token_id", Value: gguf.Uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: gguf.Uint32(2)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: gguf.Uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: gguf.Bool(true)},
		{Key: "tokenizer.ggml.add_eos_token", Value: gguf.Bool(false)},
	}...)
}

// tensor is one tensor to generate: its info and how to fill it.
type tensor struct {
	info   gguf.TensorInfo
	fill   float32   // constant value, or 0 for random N(0, std²)
	values []float32 // the data itself (rope_freqs), when set
}

// weightStd is the standard deviation of random weights and biases.
const weightStd = 0.02

// Write generates the model described by cfg and writes it to path
// atomically (through gguf.WriteFile), GGUF v3 with the default alignment.
func Write(path string, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	ts := cfg.tensors()
	out := make([]gguf.OutTensor, len(ts))
	for i, t := range ts {
		out[i] = gguf.OutTensor{Info: t.info, Src: source(cfg.Seed, t)}
	}
	return gguf.WriteFile(path, 3, cfg.kvs(), 0, out)
}

// Size returns the size in bytes of the file Write would write for cfg, or
// -1 for an invalid config.
func Size(cfg Config) int64 {
	if err := cfg.check(); err != nil {
		return -1
	}
	const align = 32
	n := int64(4 + 4 + 8 + 8)
	for _, kv := range cfg.kvs() {
		n += 8 + int64(len(kv.Key)) + 4 + valueSize(kv.Value)
	}
	var data int64
	for _, t := range cfg.tensors() {
		n += 8 + int64(len(t.info.Name)) + 4 + 8*int64(len(t.info.Dims)) + 4 + 8
		s := int64(t.info.Size())
		data += s + padding(s, align)
	}
	return n + padding(n, align) + data
}

func padding(n, align int64) int64 { return (align - n%align) % align }

// valueSize returns the wire size of a value's payload.
func valueSize(v gguf.Value) int64 {
	switch x := v.V.(type) {
	case string:
		return 8 + int64(len(x))
	case gguf.Array:
		return arraySize(x)
	case uint8, int8, bool:
		return 1
	case uint16, int16:
		return 2
	case uint32, int32, float32:
		return 4
	}
	return 8
}

func arraySize(a gguf.Array) int64 {
	n := int64(4 + 8)
	switch s := a.Values.(type) {
	case []string:
		for _, x := range s {
			n += 8 + int64(len(x))
		}
	case []gguf.Array:
		for _, x := range s {
			n += arraySize(x)
		}
	default:
		n += int64(a.Len()) * valueSize(gguf.Value{V: zeroOf(a.Elem)})
	}
	return n
}

func zeroOf(t gguf.ValueType) any {
	switch t {
	case gguf.ValueUint8, gguf.ValueInt8, gguf.ValueBool:
		return uint8(0)
	case gguf.ValueUint16, gguf.ValueInt16:
		return uint16(0)
	case gguf.ValueUint32, gguf.ValueInt32, gguf.ValueFloat32:
		return uint32(0)
	}
	return uint64(0)
}

// chunk is the number of elements generated from one random stream; the
// stream of chunk i of a tensor is seeded by (Seed, name, i), so chunks can
// be generated in parallel and the bytes do not depend on the parallelism.
const chunk = 1 << 16

// gen generates one tensor's data.
type gen struct {
	t    tensor
	seed uint64
	n    uint64 // elements
}

// source returns the tensor's data generator.
func source(seed int64, t tensor) io.WriterTo {
	h := fnv.New64a()
	h.Write([]byte(t.info.Name))
	return &gen{t: t, seed: uint64(seed) ^ h.Sum64(), n: t.info.Elements()}
}

var bufPool = sync.Pool{New: func() any { return new(chunkBuf) }}

// chunkBuf holds one chunk's values and encoded bytes.
type chunkBuf struct {
	vals [chunk]float32
	out  [chunk * 4]byte
}

// fill generates chunk i into b and returns its encoded bytes.
func (g *gen) fill(i uint64, b *chunkBuf) []byte {
	start := i * chunk
	v := b.vals[:min(chunk, g.n-start)]
	if g.t.values != nil {
		copy(v, g.t.values[start:])
	} else if g.t.fill != 0 {
		for j := range v {
			v[j] = g.t.fill
		}
	} else {
		r := rand.New(rand.NewPCG(g.seed, i))
		for j := range v {
			v[j] = float32(r.NormFloat64() * weightStd)
		}
	}
	return encode(b.out[:], v, g.t.info.Type)
}

// WriteTo generates the chunks on up to GOMAXPROCS goroutines and writes
// them in order, with a bounded number of chunks in flight.
func (g *gen) WriteTo(w io.Writer) (int64, error) {
	nch := (g.n + chunk - 1) / chunk
	type slot struct {
		b     *chunkBuf
		p     []byte
		ready chan struct{}
	}
	window := make(chan *slot, 2*runtime.GOMAXPROCS(0))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(window)
		for i := range nch {
			s := &slot{b: bufPool.Get().(*chunkBuf), ready: make(chan struct{})}
			select {
			case window <- s:
			case <-stop:
				bufPool.Put(s.b)
				return
			}
			go func() {
				s.p = g.fill(i, s.b)
				close(s.ready)
			}()
		}
	}()
	var written int64
	for s := range window {
		<-s.ready
		n, err := w.Write(s.p)
		written += int64(n)
		bufPool.Put(s.b)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// encode writes v as typ (F32, F16 or BF16) little-endian into buf and
// returns the used part (gguf.EncodeFloats: round to nearest even, as ggml
// does).
func encode(buf []byte, v []float32, typ gguf.Type) []byte {
	out, err := gguf.EncodeFloats(typ, buf, v)
	if err != nil {
		panic("synth: " + err.Error()) // Config.check allows only float types
	}
	return out
}
