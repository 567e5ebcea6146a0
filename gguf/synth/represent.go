package synth

import (
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// recipe rewrites a llama model as another architecture whose llama.cpp
// graph (src/models/<arch>.cpp) computes the same function.
type recipe struct {
	// neox reorders the q and k rows of every head to 0, 2, 4, …, 1, 3, …:
	// NEOX RoPE rotates the pairs (j, j + d/2) that NORM RoPE (llama)
	// finds at (2j, 2j + 1), with the same angle, and the dot products of
	// queries and keys do not depend on the order of their components.
	neox bool
	// qkvBias adds attn_q/k/v.bias of zeros (qwen2 adds them when present).
	qkvBias bool
	// fuse writes attn_qkv = [q; k; v] and ffn_up = [gate; up] (phi3).
	fuse bool
	// untied: the architecture needs output.weight; a tied model gets a
	// copy of token_embd.
	untied bool
	// ropeFreqs are the names llama's rope_freqs.weight (Llama 3's RoPE
	// frequency factors) goes under; none: the graph has no such factors.
	ropeFreqs []string
	// kvs are its own metadata keys (after "<arch>.") given the head size.
	kvs func(headSize int) []gguf.KV
}

var recipes = map[string]recipe{
	"llama": {ropeFreqs: []string{"rope_freqs.weight"}},
	"qwen2": {neox: true, qkvBias: true},
	"phi3":  {neox: true, fuse: true, ropeFreqs: []string{"rope_factors_long.weight", "rope_factors_short.weight"}},
	// Granite's graph is llama's with its scales: ggml_scale by 1 is exact,
	// and the attention scale is what llama computes, 1/sqrtf(head size).
	"granite": {kvs: func(hd int) []gguf.KV {
		return []gguf.KV{kv("embedding_scale", gguf.Float32(1)), kv("residual_scale", gguf.Float32(1)),
			kv("logit_scale", gguf.Float32(1)), kv("attention.scale", gguf.Float32(1/float32(math.Sqrt(float64(hd)))))}
	}},
	"internlm2": {untied: true},
	"exaone":    {neox: true, ropeFreqs: []string{"rope_freqs.weight"}},
}

// RepresentArchs returns the architectures Represent writes, sorted.
func RepresentArchs() []string {
	out := make([]string, 0, len(recipes))
	for a := range recipes {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// llamaParts are the block tensors Represent knows.
var llamaParts = []string{"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
	"ffn_norm.weight", "ffn_gate.weight", "ffn_down.weight", "ffn_up.weight"}

var blockTensor = regexp.MustCompile(`^blk\.(\d+)\.(.+)$`)

// Represent writes the llama model in to out (atomically) as architecture
// arch (one of RepresentArchs), computing the same function: the same
// logits up to float rounding (granite and internlm2 run llama's graph op
// for op: bit for bit), so the same perplexity. Tensor data is copied as bytes, row by row, so F32, F16
// and quantized models keep their values exactly; nothing larger than a
// row is held in memory. It fails, writing nothing, on a model that is not
// a plain dense llama or that arch cannot hold (Llama 3's rope_freqs in
// qwen2, granite or internlm2; phi3 fuses tensors of different types).
func Represent(in, arch, out string) error {
	fail := func(err error) error { return fmt.Errorf("synth: represent %s as %s: %w", in, arch, err) }
	r, ok := recipes[arch]
	if !ok {
		return fail(fmt.Errorf("unknown architecture (want one of %s)", strings.Join(RepresentArchs(), ", ")))
	}
	f, err := gguf.Open(in)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	w, err := newRewrite(f, r)
	if err != nil {
		return fail(err)
	}
	kvs, tensors, err := w.build(arch)
	if err != nil {
		return fail(err)
	}
	if err := gguf.WriteFile(out, f.Version, kvs, 0, tensors); err != nil {
		return fail(err)
	}
	return nil
}

// rewrite is one Represent in progress.
type rewrite struct {
	f                      *gguf.File
	r                      recipe
	heads, kvHeads, hdSize int
}

func newRewrite(f *gguf.File, r recipe) (*rewrite, error) {
	if a := f.Arch(); a != "llama" {
		return nil, fmt.Errorf("architecture %q, want llama", a)
	}
	if n, _ := f.Uint("llama.expert_count"); n > 0 {
		return nil, errors.New("a mixture-of-experts model")
	}
	embd, _ := f.Uint("llama.embedding_length")
	heads, _ := f.Uint("llama.attention.head_count")
	kvHeads, ok := f.Uint("llama.attention.head_count_kv")
	if !ok {
		kvHeads = heads
	}
	if heads == 0 || kvHeads == 0 || embd%heads != 0 || heads%kvHeads != 0 {
		return nil, fmt.Errorf("embedding length %d, %d heads, %d KV heads: not a llama attention shape", embd, heads, kvHeads)
	}
	hd := embd / heads
	for _, k := range []string{"llama.attention.key_length", "llama.attention.value_length"} {
		if v, ok := f.Uint(k); ok && v != hd {
			return nil, fmt.Errorf("%s %d is not embedding length / heads %d", k, v, hd)
		}
	}
	if r.neox && hd%2 != 0 {
		return nil, fmt.Errorf("odd head size %d", hd)
	}
	return &rewrite{f: f, r: r, heads: int(heads), kvHeads: int(kvHeads), hdSize: int(hd)}, nil
}

// build returns the rewritten metadata and tensors, in the input's order.
func (w *rewrite) build(arch string) ([]gguf.KV, []gguf.OutTensor, error) {
	var kvs []gguf.KV
	for _, kv := range w.f.KVs {
		switch {
		case kv.Key == "general.architecture":
			kv.Value = gguf.String(arch)
		case strings.HasPrefix(kv.Key, "llama."):
			kv.Key = arch + kv.Key[len("llama"):]
		}
		kvs = append(kvs, kv)
	}
	if w.r.kvs != nil {
		for _, kv := range w.r.kvs(w.hdSize) {
			kv.Key = arch + "." + kv.Key
			kvs = slices.DeleteFunc(kvs, func(x gguf.KV) bool { return x.Key == kv.Key })
			kvs = append(kvs, kv)
		}
	}
	var out []gguf.OutTensor
	for i, t := range w.f.Tensors {
		var ts []gguf.OutTensor
		var err error
		if m := blockTensor.FindStringSubmatch(t.Name); m != nil {
			ts, err = w.block("blk."+m[1]+".", m[2], i)
		} else {
			ts, err = w.global(t.Name, i)
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, ts...)
	}
	return kvs, out, nil
}

// global rewrites a tensor outside the blocks.
func (w *rewrite) global(name string, i int) ([]gguf.OutTensor, error) {
	switch name {
	case "token_embd.weight":
		ts := []gguf.OutTensor{w.f.OutTensor(i)}
		if _, has := w.f.Tensor("output.weight"); !has && w.r.untied {
			out := w.f.OutTensor(i)
			out.Info.Name = "output.weight"
			ts = append(ts, out)
		}
		return ts, nil
	case "output_norm.weight", "output.weight":
		return []gguf.OutTensor{w.f.OutTensor(i)}, nil
	case "rope_freqs.weight":
		if len(w.r.ropeFreqs) == 0 {
			return nil, errors.New("it has Llama 3's rope_freqs.weight, which this architecture's graph does not apply")
		}
		var ts []gguf.OutTensor
		for _, n := range w.r.ropeFreqs {
			t := w.f.OutTensor(i)
			t.Info.Name = n
			ts = append(ts, t)
		}
		return ts, nil
	}
	return nil, fmt.Errorf("tensor %s: not one of a plain llama model", name)
}

// block rewrites tensor i, part of block prefix ("blk.3.").
func (w *rewrite) block(prefix, part string, i int) ([]gguf.OutTensor, error) {
	if !slices.Contains(llamaParts, part) {
		return nil, fmt.Errorf("tensor %s%s: not one of a plain llama block", prefix, part)
	}
	switch part {
	case "attn_q.weight", "attn_k.weight", "attn_v.weight":
		switch {
		case !w.r.fuse:
			t, err := w.attn(i)
			return w.withBias(t, err)
		case part == "attn_q.weight":
			return w.fused(prefix, "attn_qkv.weight", w.attn, "attn_q.weight", "attn_k.weight", "attn_v.weight")
		}
		return nil, nil // in attn_qkv
	case "ffn_gate.weight", "ffn_up.weight":
		switch {
		case !w.r.fuse:
		case part == "ffn_up.weight":
			return w.fused(prefix, "ffn_up.weight", w.raw, "ffn_gate.weight", "ffn_up.weight")
		default:
			return nil, nil // in ffn_up
		}
	}
	return []gguf.OutTensor{w.f.OutTensor(i)}, nil
}

// raw is tensor i as it is.
func (w *rewrite) raw(i int) (gguf.OutTensor, error) { return w.f.OutTensor(i), nil }

// fused is one tensor, name, holding the rows of the block's tensors parts
// in turn, each converted by conv.
func (w *rewrite) fused(prefix, name string, conv func(int) (gguf.OutTensor, error), parts ...string) ([]gguf.OutTensor, error) {
	var ts []gguf.OutTensor
	for _, p := range parts {
		j, ok := w.f.Tensor(prefix + p)
		if !ok {
			return nil, fmt.Errorf("no tensor %s%s", prefix, p)
		}
		t, err := conv(j)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return stack(prefix+name, ts...)
}

// attn returns the q, k or v weight i, its head rows reordered for NEOX
// RoPE when the recipe asks (q and k).
func (w *rewrite) attn(i int) (gguf.OutTensor, error) {
	info := w.f.Tensors[i]
	heads := w.kvHeads
	if strings.HasSuffix(info.Name, "attn_q.weight") {
		heads = w.heads
	}
	if len(info.Dims) != 2 || info.Dims[1] != uint64(heads*w.hdSize) {
		return gguf.OutTensor{}, fmt.Errorf("tensor %s has shape %v, want [n, %d]", info.Name, info.Dims, heads*w.hdSize)
	}
	if !w.r.neox || strings.HasSuffix(info.Name, "attn_v.weight") {
		return w.f.OutTensor(i), nil
	}
	hd := w.hdSize
	order := make([]int, 0, heads*hd)
	for h := range heads {
		for j := range hd {
			// NEOX position j holds NORM position 2j (first half) or
			// 2(j − hd/2) + 1 (second half).
			src := 2 * j
			if j >= hd/2 {
				src = 2*(j-hd/2) + 1
			}
			order = append(order, h*hd+src)
		}
	}
	return rowsOf(w.f, i, info.Name, order)
}

// withBias adds a zero bias after a q, k or v weight when the recipe asks.
func (w *rewrite) withBias(t gguf.OutTensor, err error) ([]gguf.OutTensor, error) {
	if err != nil || !w.r.qkvBias {
		return []gguf.OutTensor{t}, err
	}
	n := t.Info.Dims[1]
	bias := gguf.TensorInfo{Name: strings.TrimSuffix(t.Info.Name, ".weight") + ".bias", Dims: []uint64{n}, Type: gguf.TypeF32}
	zeros := gguf.WriterToFunc(func(dst io.Writer) (int64, error) {
		n, err := dst.Write(make([]byte, bias.Size()))
		return int64(n), err
	})
	return []gguf.OutTensor{t, {Info: bias, Src: zeros}}, nil
}

// rowsOf is tensor i of f under name with its rows (ne1) in the given
// order of source rows, copied one row at a time.
func rowsOf(f *gguf.File, i int, name string, order []int) (gguf.OutTensor, error) {
	info := f.Tensors[i]
	rowSize, err := info.Type.RowSize(info.Dims[0])
	if err != nil {
		return gguf.OutTensor{}, fmt.Errorf("tensor %s: %w", info.Name, err)
	}
	info.Name = name
	src := f.TensorReader(i)
	return gguf.OutTensor{Info: info, Src: gguf.WriterToFunc(func(dst io.Writer) (int64, error) {
		row := make([]byte, rowSize)
		var n int64
		for _, r := range order {
			if _, err := src.ReadAt(row, int64(r)*int64(rowSize)); err != nil {
				return n, err
			}
			m, err := dst.Write(row)
			n += int64(m)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	})}, nil
}

// stack is one tensor named name holding the rows of parts in turn; they
// must have one row length and one type.
func stack(name string, parts ...gguf.OutTensor) ([]gguf.OutTensor, error) {
	info := parts[0].Info
	info.Name = name
	info.Dims = []uint64{info.Dims[0], 0}
	for _, p := range parts {
		if p.Info.Type != info.Type || len(p.Info.Dims) != 2 || p.Info.Dims[0] != info.Dims[0] {
			return nil, fmt.Errorf("%s would join %s (%s %v) and %s (%s %v): one type and row length needed",
				name, parts[0].Info.Name, parts[0].Info.Type, parts[0].Info.Dims, p.Info.Name, p.Info.Type, p.Info.Dims)
		}
		info.Dims[1] += p.Info.Dims[1]
	}
	return []gguf.OutTensor{{Info: info, Src: gguf.WriterToFunc(func(dst io.Writer) (int64, error) {
		var n int64
		for _, p := range parts {
			m, err := p.Src.WriteTo(dst)
			n += m
			if err != nil {
				return n, err
			}
		}
		return n, nil
	})}}, nil
}
