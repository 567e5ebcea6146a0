package cgo

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// namesFFNInput lists the architectures whose graph names the residual
// stream before a block's FFN "ffn_inp-<i>"; gemma, gemma2 and gemma3 name
// it "sa_out-<i>" and phi3 leaves it unnamed, which the capture hook
// (l_out, ffn_inp, inp_embd only) cannot see.
var namesFFNInput = map[string]bool{"llama": true, "qwen2": true, "qwen3": true, "granite": true, "olmo2": true,
	"smollm3": true, "internlm2": true, "exaone": true}

// archConfig is a small generated model of arch: 6 blocks, so that gemma3
// has a global-attention block (5) among its sliding-window ones and
// smollm3 a block without RoPE (3).
func archConfig(arch string) synth.Config {
	c := synth.Tiny()
	c.Arch, c.Blocks = arch, 6
	c.TiedEmbeddings = arch == "gemma" || arch == "gemma2"
	return c
}

const archText = "Once upon a time there was a little girl named Lily. She loved to play outside in the park with her dog."

// graphTrace is what the hooks saw of one decode.
type graphTrace struct {
	order  []int                // the blocks whose l_out the hook saw, in order
	out    map[int][]float32    // l_out-<i>; -1: inp_embd
	ffnInp map[int][]float32    // ffn_inp-<i>
	mm     map[string][]float32 // the input of each weight multiplication
	cols   map[string]int       // its row length
}

// traceDecode decodes toks (every one an output) on m with both hooks on
// and returns what they saw and the logits.
func traceDecode(t *testing.T, m *Model, toks []int32) (*graphTrace, [][]float32) {
	t.Helper()
	g := &graphTrace{out: map[int][]float32{}, ffnInp: map[int][]float32{}, mm: map[string][]float32{}, cols: map[string]int{}}
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, CaptureFFNInput: true, CaptureInput: true,
		Capture: func(tn Tensor) bool {
			switch {
			case tn.Kind == FFNInput:
				g.ffnInp[tn.Layer] = slices.Clone(tn.Data)
			case tn.Layer >= 0:
				g.order = append(g.order, tn.Layer)
				fallthrough
			default:
				g.out[tn.Layer] = slices.Clone(tn.Data)
			}
			return true
		},
		MatMulInputs: func(w string, cols, rows int, data []float32) bool {
			g.mm[w], g.cols[w] = slices.Clone(data), cols
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks)
	var logits [][]float32
	for i := range toks {
		logits = append(logits, slices.Clone(ctx.Logits(i)))
	}
	return g, logits
}

// TestArchSynth loads a generated model of every architecture, decodes a
// sentence and checks: finite logits over the whole vocabulary; the
// capture hook sees l_out-<i> of every block in order, and ffn_inp-<i>
// exactly where the table says the graph names it; every weight matrix of
// every block is multiplied (none is dead); each block's output is its
// input plus what its attn_output and ffn_down write, through the post
// norms and residual scale the table lists; and zeroing those two weights
// makes the block an exact identity.
func TestArchSynth(t *testing.T) {
	for _, arch := range synth.Archs() {
		t.Run(arch, func(t *testing.T) {
			cfg := archConfig(arch)
			path := filepath.Join(t.TempDir(), arch+".gguf")
			if err := synth.Write(path, cfg); err != nil {
				t.Fatal(err)
			}
			m, err := LoadModel(path, ModelParams{NoMmap: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			toks, err := m.Tokenize(archText, true, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(toks) <= 2*synth.DefaultSlidingWindow {
				t.Fatalf("%d tokens do not reach past the sliding window", len(toks))
			}
			g, logits := traceDecode(t, m, toks)
			checkLogits(t, logits, cfg.Vocab)
			if want := seq(cfg.Blocks); !slices.Equal(g.order, want) {
				t.Fatalf("l_out blocks %v, want %v", g.order, want)
			}
			if has := len(g.ffnInp) == cfg.Blocks; has != namesFFNInput[arch] || (!has && len(g.ffnInp) != 0) {
				t.Fatalf("ffn_inp seen for %d of %d blocks; the table says the graph names it: %v", len(g.ffnInp), cfg.Blocks, namesFFNInput[arch])
			}
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, ti := range f.Tensors {
				if strings.HasPrefix(ti.Name, "blk.") && len(ti.Dims) == 2 && g.mm[ti.Name] == nil {
					t.Errorf("%s is never multiplied", ti.Name)
				}
			}
			for b := range cfg.Blocks {
				checkBlockSum(t, f, g, b, len(toks))
			}
			checkIdentity(t, m, toks, 2)
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// checkLogits checks that every row has vocab finite logits, not all equal.
func checkLogits(t *testing.T, logits [][]float32, vocab int) {
	t.Helper()
	for i, row := range logits {
		if len(row) != vocab {
			t.Fatalf("token %d: %d logits, want %d", i, len(row), vocab)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("token %d: logit %v", i, v)
			}
			lo, hi = min(lo, float64(v)), max(hi, float64(v))
		}
		if hi == lo {
			t.Fatalf("token %d: every logit is %v", i, lo)
		}
	}
}

// inputScale is the factor between "inp_embd" (what CaptureInput hands
// over) and block 0's input: gemma, gemma2 and gemma3 multiply by
// sqrt(n_embd) afterwards (their "inp_scaled"); granite's embedding scale
// is inside inp_embd already.
func inputScale(f *gguf.File) float32 {
	if strings.HasPrefix(f.Arch(), "gemma") {
		n, _ := f.Uint(f.Arch() + ".embedding_length")
		return float32(math.Sqrt(float64(n)))
	}
	return 1
}

// checkBlockSum checks block b's residual arithmetic on n token rows:
// l_out-b = l_out-(b−1) + c(A) + c(Y) (for block 0, inp_embd times
// inputScale instead of l_out-(b−1)), with A = attn_output·(its input),
// Y = ffn_down·(its input) and c the post norm (post_attention_norm,
// post_ffw_norm) where the model has one, else multiplication by the
// residual scale (granite) or 1; and ffn_inp-b = l_out-(b−1) + c(A) where
// the graph names it.
func checkBlockSum(t *testing.T, f *gguf.File, g *graphTrace, b, n int) {
	t.Helper()
	p := fmt.Sprintf("blk.%d.", b)
	scale := 1.0
	if s, ok := f.Float(f.Arch() + ".residual_scale"); ok {
		scale = s
	}
	contribution := func(weight, post string) []float64 {
		y := matMul(fileFloats(t, f, p+weight), g.mm[p+weight], g.cols[p+weight], n)
		if _, ok := f.Tensor(p + post); ok {
			return rmsNorm(y, fileFloats(t, f, p+post), n)
		}
		for i := range y {
			y[i] *= scale
		}
		return y
	}
	attn := contribution("attn_output.weight", "post_attention_norm.weight")
	ffn := contribution("ffn_down.weight", "post_ffw_norm.weight")
	in := g.out[b-1]
	if b == 0 {
		in = slices.Clone(in)
		for i := range in {
			in[i] *= inputScale(f)
		}
	}
	sum := make([]float32, len(in))
	mid := make([]float32, len(in))
	for i := range in {
		mid[i] = float32(float64(in[i]) + attn[i])
		sum[i] = float32(float64(in[i]) + attn[i] + ffn[i])
	}
	if !close32(sum, g.out[b], 1e-5) {
		t.Errorf("block %d: l_out is not its input + attention + FFN contributions (max diff %g)", b, maxDiff(sum, g.out[b]))
	}
	if ffnInp := g.ffnInp[b]; ffnInp != nil && !close32(mid, ffnInp, 1e-5) {
		t.Errorf("block %d: ffn_inp is not its input + the attention contribution (max diff %g)", b, maxDiff(mid, ffnInp))
	}
}

// checkIdentity zeroes block b's attn_output and ffn_down and checks that
// its output is then its input, bit for bit; it puts the weights back.
func checkIdentity(t *testing.T, m *Model, toks []int32, b int) {
	t.Helper()
	for _, s := range []string{"attn_output.weight", "ffn_down.weight"} {
		w, err := m.Weight(fmt.Sprintf("blk.%d.%s", b, s))
		if err != nil {
			t.Fatal(err)
		}
		orig := make([]byte, w.Bytes())
		if err := w.Get(orig); err != nil {
			t.Fatal(err)
		}
		if err := w.Set(make([]byte, w.Bytes())); err != nil {
			t.Fatal(err)
		}
		defer w.Set(orig)
	}
	g, _ := traceDecode(t, m, toks)
	if !slices.Equal(g.out[b], g.out[b-1]) {
		t.Errorf("block %d with zero attn_output and ffn_down is not an identity (max diff %g)", b, maxDiff(g.out[b], g.out[b-1]))
	}
}

// matMul returns W·x for every row of x (rows of cols floats): W is a GGUF
// weight of ne0 = cols, so out has len(W)/cols values per row.
func matMul(w, x []float32, cols, rows int) []float64 {
	outs := len(w) / cols
	y := make([]float64, rows*outs)
	for r := range rows {
		xr := x[r*cols : (r+1)*cols]
		for o := range outs {
			var s float64
			for k, wv := range w[o*cols : (o+1)*cols] {
				s += float64(wv) * float64(xr[k])
			}
			y[r*outs+o] = s
		}
	}
	return y
}

// rmsNorm is llama.cpp's RMS norm with weight w (eps 1e-5, as synth writes)
// of every row.
func rmsNorm(y []float64, w []float32, rows int) []float64 {
	n := len(y) / rows
	for r := range rows {
		row := y[r*n : (r+1)*n]
		var ss float64
		for _, v := range row {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(n)+1e-5)
		for i := range row {
			row[i] *= inv * float64(w[i])
		}
	}
	return y
}

// fileFloats decodes a float tensor of f.
func fileFloats(t *testing.T, f *gguf.File, name string) []float32 {
	t.Helper()
	i, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	b, err := f.TensorBytes(i)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, f.Tensors[i].Elements())
	if err := gguf.DecodeFloats(f.Tensors[i].Type, b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// fileLogits loads the model at path and returns the logits of toks
// (decoded as one batch, every token an output).
func fileLogits(t *testing.T, path string, toks []int32) [][]float32 {
	t.Helper()
	m, err := LoadModel(path, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Flash attention: one fused kernel per head, so a permutation of the
	// q·k components (NEOX RoPE) rounds as llama does; plain attention's
	// matrix products block the sums differently per head layout.
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, FlashAttention: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks)
	var out [][]float32
	for i := range toks {
		out = append(out, slices.Clone(ctx.Logits(i)))
	}
	return out
}

// noRopeFactors are the architectures of synth.RepresentArchs whose graph
// has no RoPE frequency factors, so no place for Llama 3's rope_freqs.
var noRopeFactors = map[string]bool{"qwen2": true, "granite": true, "internlm2": true}

// representTolerance is how far a re-presentation's logits may be from
// llama's, relative to the largest logit. llama itself, granite and
// internlm2 run llama's graph op for op: bit for bit. qwen2 and exaone
// permute the components of each q·k dot product (NEOX RoPE): float32
// rounding at most (ggml's CPU kernels give 0). phi3 multiplies the
// queries by 1/sqrt(head size) before they are rounded to F16 for the
// product with the F16 KV cache, where llama scales the product after it:
// F16 rounding of the attention scores (2^-11 relative), 0 when the scale
// is a power of two (head size 16, 64, …).
var representTolerance = map[string]float64{"llama": 0, "granite": 0, "internlm2": 0, "qwen2": 1e-5, "exaone": 1e-5, "phi3": 1.0 / 512}

// compareRepresented writes the llama model at path as every architecture
// of synth.RepresentArchs and checks that each gives llama's logits on
// archText within representTolerance. With ropeFreqs (the model has
// rope_freqs.weight) the architectures without RoPE factors must refuse
// it.
func compareRepresented(t *testing.T, path string, ropeFreqs bool) {
	t.Helper()
	m, err := LoadModel(path, ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := m.Tokenize(archText, true, false)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	base := fileLogits(t, path, toks)
	var scale float64
	for _, row := range base {
		for _, v := range row {
			scale = max(scale, math.Abs(float64(v)))
		}
	}
	for _, arch := range synth.RepresentArchs() {
		out := filepath.Join(t.TempDir(), arch+".gguf")
		err := synth.Represent(path, arch, out)
		if ropeFreqs && noRopeFactors[arch] {
			if err == nil || !strings.Contains(err.Error(), "rope_freqs") {
				t.Errorf("%s: %v, want a refusal of rope_freqs", arch, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", arch, err)
			continue
		}
		got := fileLogits(t, out, toks)
		var worst float64
		for i := range base {
			worst = max(worst, maxDiff(got[i], base[i]))
		}
		t.Logf("%s: %s: max |logit − llama's| = %.3g (logits up to %.3g)", filepath.Base(path), arch, worst, scale)
		tol, ok := representTolerance[arch]
		if !ok || worst > tol*scale {
			t.Errorf("%s as %s: logits differ from llama's by up to %g", path, arch, worst)
		}
	}
}

// TestRepresentTrained re-presents the trained llama models as every
// architecture Represent knows and compares logits.
func TestRepresentTrained(t *testing.T) {
	for _, name := range []string{"tinystories-deep12.gguf", "stories15M-f16.gguf"} {
		t.Run(name, func(t *testing.T) {
			compareRepresented(t, shared.Model(t, name), false)
		})
	}
}

// TestRepresentLlama3 re-presents generated models of Llama 3's shapes:
// GQA 4:1 and 8:1, rope_freqs, a 128,256-token vocabulary, tied and
// untied. Architectures without RoPE frequency factors refuse rope_freqs.
func TestRepresentLlama3(t *testing.T) {
	for _, c := range []struct {
		kvHeads int
		tied    bool
		vocab   int
	}{{2, false, 128256}, {1, true, 4096}} {
		t.Run(fmt.Sprintf("gqa%d:1-tied=%v-vocab%d", 8/c.kvHeads, c.tied, c.vocab), func(t *testing.T) {
			cfg := synth.Config{Arch: "llama", Blocks: 3, Embd: 128, FFN: 256, Heads: 8, KVHeads: c.kvHeads,
				Vocab: c.vocab, Ctx: 256, Type: gguf.TypeF16, Seed: 3, TiedEmbeddings: c.tied, RopeFreqs: true, RopeBase: 500000}
			path := filepath.Join(t.TempDir(), "llama3.gguf")
			if err := synth.Write(path, cfg); err != nil {
				t.Fatal(err)
			}
			compareRepresented(t, path, true)
		})
	}
}
