package synth

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// The architectures, as llama.cpp (ollama v0.17.4's copy) loads them:
// tensor names and shapes from llama-model.cpp's load_tensors, metadata
// from its load_hparams, and what the graphs in src/models do with them.

// dim is a tensor dimension in terms of the config.
type dim int

const (
	dEmbd  dim = iota // Embd
	dQ                // Heads × head size
	dKV               // KVHeads × head size
	dHead             // head size
	dFFN              // FFN
	dFFN2             // 2 × FFN: phi3's ffn_up holds the gate, then the up rows
	dQKV              // Q + 2 KV: phi3's attn_qkv holds q, k, then v rows
	dVocab            // Vocab
)

// part is one tensor of a block, named after "blk.<i>.". 1-D parts are F32
// vectors filled with fill (norms: 1) or, with fill 0, random (biases);
// 2-D parts are random weights of Config.Type.
type part struct {
	name string
	dims []dim
	fill float32
}

func vector(name string, d dim, fill float32) part { return part{name, []dim{d}, fill} }
func matrix(name string, in, out dim) part         { return part{name, []dim{in, out}, 0} }

// Parts shared by the architectures, in llama.cpp's converter order.
var (
	attnNorm  = vector("attn_norm.weight", dEmbd, 1)
	attnQ     = matrix("attn_q.weight", dEmbd, dQ)
	attnK     = matrix("attn_k.weight", dEmbd, dKV)
	attnV     = matrix("attn_v.weight", dEmbd, dKV)
	attnOut   = matrix("attn_output.weight", dQ, dEmbd)
	ffnNorm   = vector("ffn_norm.weight", dEmbd, 1)
	ffnGate   = matrix("ffn_gate.weight", dEmbd, dFFN)
	ffnDown   = matrix("ffn_down.weight", dFFN, dEmbd)
	ffnUp     = matrix("ffn_up.weight", dEmbd, dFFN)
	qHeadNorm = vector("attn_q_norm.weight", dHead, 1)
	kHeadNorm = vector("attn_k_norm.weight", dHead, 1)
	postAttn  = vector("post_attention_norm.weight", dEmbd, 1)
	postFFN   = vector("post_ffw_norm.weight", dEmbd, 1)

	llamaBlock = []part{attnNorm, attnQ, attnK, attnV, attnOut, ffnNorm, ffnGate, ffnDown, ffnUp}
)

// output says whether an architecture's output layer may be tied to the
// token embedding (no output.weight).
type output int

const (
	tiedOrNot  output = iota
	tiedOnly          // loads token_embd as the output, never output.weight
	untiedOnly        // requires output.weight
)

// archSpec describes one architecture.
type archSpec struct {
	block  []part
	output output
	// ropeFreqs: the graph takes Llama 3's rope_freqs.weight (Config.RopeFreqs).
	ropeFreqs bool
	// ropeBase is the default rope.freq_base.
	ropeBase float32
	// kvs are its own metadata keys (after "<arch>."), given the config.
	kvs func(c Config) []gguf.KV
	// name replaces the architecture in general.name.
	name string
}

// archs are the architectures Write generates.
var archs = map[string]archSpec{
	"llama": {block: llamaBlock, ropeFreqs: true},
	"qwen2": {block: []part{attnNorm, attnQ, vector("attn_q.bias", dQ, 0), attnK, vector("attn_k.bias", dKV, 0),
		attnV, vector("attn_v.bias", dKV, 0), attnOut, ffnNorm, ffnGate, ffnDown, ffnUp}},
	"qwen3": {block: []part{attnNorm, attnQ, qHeadNorm, attnK, kHeadNorm, attnV, attnOut, ffnNorm, ffnGate, ffnDown, ffnUp}},
	// llama.cpp gives a model whose general.name holds "phi3" Phi-3's token
	// attributes, which needs an <|endoftext|> token (llama-vocab.cpp:2511).
	"phi3": {block: []part{attnNorm, matrix("attn_qkv.weight", dEmbd, dQKV), attnOut, ffnNorm,
		matrix("ffn_up.weight", dEmbd, dFFN2), ffnDown}, name: "phi"},
	"gemma":  {block: llamaBlock, output: tiedOnly},
	"gemma2": {block: gemmaBlock(false), output: tiedOnly, kvs: gemma2KVs},
	"gemma3": {block: gemmaBlock(true), ropeBase: 1e6, kvs: func(c Config) []gguf.KV {
		return []gguf.KV{kv("attention.sliding_window", gguf.Uint32(uint32(c.slidingWindow())))}
	}},
	"granite": {block: llamaBlock, kvs: graniteKVs},
	"olmo2": {block: []part{attnQ, attnK, attnV, attnOut, vector("attn_q_norm.weight", dQ, 1),
		vector("attn_k_norm.weight", dKV, 1), postAttn, ffnGate, ffnUp, ffnDown, postFFN}, output: untiedOnly,
		// OLMo 3: three sliding-window blocks, then a global one, only
		// with a window set (Config.SlidingWindow).
		kvs: func(c Config) []gguf.KV {
			if c.SlidingWindow == 0 {
				return nil
			}
			return []gguf.KV{kv("attention.sliding_window", gguf.Uint32(uint32(c.SlidingWindow)))}
		}},
	// smollm3 skips RoPE in every 4th block; the step is no metadata key
	// (llama.cpp sets hparams.n_no_rope_layer_step = 4 itself).
	"smollm3":   {block: llamaBlock},
	"internlm2": {block: llamaBlock, output: untiedOnly},
	"exaone":    {block: llamaBlock, ropeFreqs: true},
}

// Archs returns the architectures Write generates, sorted.
func Archs() []string {
	out := make([]string, 0, len(archs))
	for a := range archs {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// gemmaBlock is gemma2's block (gemma3's with the per-head q/k norms).
func gemmaBlock(headNorms bool) []part {
	b := []part{attnNorm, attnQ, attnK, attnV, attnOut}
	if headNorms {
		b = []part{attnNorm, attnQ, qHeadNorm, attnK, kHeadNorm, attnV, attnOut}
	}
	return append(b, postAttn, ffnNorm, ffnGate, ffnUp, ffnDown, postFFN)
}

// kv is a key of the architecture's own, completed with "<arch>." in kvs.
func kv(key string, v gguf.Value) gguf.KV { return gguf.KV{Key: key, Value: v} }

// gemma2KVs are Gemma 2's window and soft-capping values.
func gemma2KVs(c Config) []gguf.KV {
	return []gguf.KV{
		kv("attention.sliding_window", gguf.Uint32(uint32(c.slidingWindow()))),
		kv("attn_logit_softcapping", gguf.Float32(50)),
		kv("final_logit_softcapping", gguf.Float32(30)),
	}
}

// graniteKVs are scales of Granite 3's order of magnitude: the embeddings
// ×12, each block's attention and FFN outputs ×0.22 before the residual
// adds, the logits ÷8, and attention logits scaled by 1/head size.
func graniteKVs(c Config) []gguf.KV {
	return []gguf.KV{
		kv("logit_scale", gguf.Float32(8)),
		kv("residual_scale", gguf.Float32(0.22)),
		kv("embedding_scale", gguf.Float32(12)),
		kv("attention.scale", gguf.Float32(1/float32(c.headSize()))),
	}
}

func (c Config) headSize() int { return c.Embd / c.Heads }

// slidingWindow returns the window of gemma2 and gemma3 in tokens.
func (c Config) slidingWindow() int {
	if c.SlidingWindow > 0 {
		return c.SlidingWindow
	}
	return DefaultSlidingWindow
}

// DefaultSlidingWindow is the gemma2/gemma3 window when
// Config.SlidingWindow is 0: short, so that the attention of a test's few
// dozen tokens reaches past it.
const DefaultSlidingWindow = 8

// ropeBase returns rope.freq_base.
func (c Config) ropeBase() float32 {
	if c.RopeBase > 0 {
		return c.RopeBase
	}
	if b := archs[c.Arch].ropeBase; b > 0 {
		return b
	}
	return 10000
}

// size returns the length of d.
func (c Config) size(d dim) uint64 {
	hd := uint64(c.headSize())
	switch d {
	case dEmbd:
		return uint64(c.Embd)
	case dQ:
		return hd * uint64(c.Heads)
	case dKV:
		return hd * uint64(c.KVHeads)
	case dHead:
		return hd
	case dFFN:
		return uint64(c.FFN)
	case dFFN2:
		return 2 * uint64(c.FFN)
	case dQKV:
		return hd * uint64(c.Heads+2*c.KVHeads)
	}
	return uint64(c.Vocab)
}

// checkArch returns what is wrong with the config for its architecture.
func (c Config) checkArch() []string {
	s, ok := archs[c.Arch]
	if !ok {
		return []string{fmt.Sprintf("arch %q, want one of %s", c.Arch, strings.Join(Archs(), ", "))}
	}
	var bad []string
	switch {
	case s.output == tiedOnly && !c.TiedEmbeddings:
		bad = append(bad, fmt.Sprintf("%s has no output.weight: set TiedEmbeddings", c.Arch))
	case s.output == untiedOnly && c.TiedEmbeddings:
		bad = append(bad, fmt.Sprintf("%s needs output.weight: TiedEmbeddings is not possible", c.Arch))
	}
	if c.RopeFreqs && !s.ropeFreqs {
		bad = append(bad, fmt.Sprintf("%s has no rope_freqs tensor (RopeFreqs is for llama and exaone)", c.Arch))
	}
	return bad
}

// archKVs returns the model's hyperparameters, "<arch>."-prefixed.
func (c Config) archKVs() []gguf.KV {
	u := func(v int) gguf.Value { return gguf.Uint32(uint32(v)) }
	kvs := []gguf.KV{
		kv("block_count", u(c.Blocks)),
		kv("context_length", u(c.Ctx)),
		kv("embedding_length", u(c.Embd)),
		kv("feed_forward_length", u(c.FFN)),
		kv("attention.head_count", u(c.Heads)),
		kv("attention.head_count_kv", u(c.KVHeads)),
		kv("attention.layer_norm_rms_epsilon", gguf.Float32(1e-5)),
		kv("rope.freq_base", gguf.Float32(c.ropeBase())),
		kv("rope.dimension_count", u(c.headSize())),
	}
	if f := archs[c.Arch].kvs; f != nil {
		kvs = append(kvs, f(c)...)
	}
	for i := range kvs {
		kvs[i].Key = c.Arch + "." + kvs[i].Key
	}
	return kvs
}

// tensors returns the tensors in llama.cpp's converter order: the token
// embedding, output norm and output, rope_freqs, then each block's parts.
func (c Config) tensors() []tensor {
	var ts []tensor
	add := func(name string, p part) {
		info := gguf.TensorInfo{Name: name, Type: c.Type}
		for _, d := range p.dims {
			info.Dims = append(info.Dims, c.size(d))
		}
		if len(p.dims) == 1 {
			info.Type = gguf.TypeF32
		}
		ts = append(ts, tensor{info: info, fill: p.fill})
	}
	add("token_embd.weight", matrix("", dEmbd, dVocab))
	add("output_norm.weight", vector("", dEmbd, 1))
	if !c.TiedEmbeddings {
		add("output.weight", matrix("", dEmbd, dVocab))
	}
	if c.RopeFreqs {
		f := llama3RopeFactors(c.headSize(), float64(c.ropeBase()))
		info := gguf.TensorInfo{Name: "rope_freqs.weight", Dims: []uint64{uint64(len(f))}, Type: gguf.TypeF32}
		ts = append(ts, tensor{info: info, values: f})
	}
	for b := range c.Blocks {
		for _, p := range archs[c.Arch].block {
			add(fmt.Sprintf("blk.%d.%s", b, p.name), p)
		}
	}
	return ts
}

// llama3RopeFactors returns the rope_freqs.weight of Llama 3.1's RoPE
// scaling (factor 8, low and high frequency factors 1 and 4, original
// context 8192), as llama.cpp's converter computes them: 1 for wavelengths
// under 8192/4, 8 over 8192, smoothly between.
func llama3RopeFactors(headSize int, base float64) []float32 {
	const factor, low, high, orig = 8.0, 1.0, 4.0, 8192.0
	out := make([]float32, headSize/2)
	for i := range out {
		freq := math.Pow(base, -2*float64(i)/float64(headSize))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < orig/high:
			out[i] = 1
		case wavelen > orig/low:
			out[i] = factor
		default:
			smooth := (orig/wavelen - low) / (high - low)
			out[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}
