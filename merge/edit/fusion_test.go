package edit

// Tests of the arithmetic of fused blocks for each float type, checked
// against a reference decoder written here, and of the norm rules.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// Reference decoding, written out independently of the package's codecs.

func refF16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(mant, -24)
	case 0x1f:
		if mant != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1024+mant, exp-25)
}

func refBF16(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }

// refDecode decodes a tensor's data of type typ.
func refDecode(t testing.TB, typ gguf.Type, b []byte) []float64 {
	t.Helper()
	var out []float64
	switch typ {
	case gguf.TypeF32:
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))))
		}
	case gguf.TypeF16:
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, refF16(binary.LittleEndian.Uint16(b[i:])))
		}
	case gguf.TypeBF16:
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, refBF16(binary.LittleEndian.Uint16(b[i:])))
		}
	default:
		t.Fatalf("no reference decoder for %s", typ)
	}
	return out
}

// refULP returns the spacing of the values of typ around |x|.
func refULP(typ gguf.Type, x float64) float64 {
	x = math.Abs(x)
	var mantBits, minExp int
	switch typ {
	case gguf.TypeF16:
		mantBits, minExp = 10, -14
	case gguf.TypeBF16:
		mantBits, minExp = 7, -126
	default:
		mantBits, minExp = 23, -126
	}
	e := minExp
	if x > 0 {
		_, fe := math.Frexp(x) // x = frac·2^fe, frac in [0.5, 1)
		e = max(fe-1, minExp)
	}
	return math.Ldexp(1, e-mantBits)
}

// distinctNorms makes every norm weight of the model differ between blocks
// (synth fills them with 1), so that the norm rules can be told apart.
func distinctNorms(f *gguf.File, e *gguf.Edit) {
	for _, ti := range f.Tensors {
		blk, suffix := rwBlockOf(ti.Name)
		if blk < 0 || !strings.Contains(suffix, "norm") || ti.Type != gguf.TypeF32 {
			continue
		}
		data := make([]byte, ti.Size())
		for i := 0; i < len(data)/4; i++ {
			v := float32(1 + 0.25*float64(blk) + 0.001*float64(i%97) - 0.03*float64(i%5))
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
		info := ti
		info.Dims = slices.Clone(ti.Dims)
		if err := e.ReplaceTensor(ti.Name, info, bytes.NewReader(data)); err != nil {
			panic(err)
		}
	}
}

// rwCheckFused checks every output block of plan against the input:
// single-block outputs and fusions with one weight of 1 are byte copies,
// norms under NormsFirst are the first block's bytes, and everything else is
// Σ w_k θ_k within the rounding of the float32 arithmetic and of the
// output type.
func rwCheckFused(t *testing.T, in, out *gguf.File, plan *merge.Plan, norms NormRule) {
	t.Helper()
	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := out.Uint(b.Arch.Name + ".block_count"); n != uint64(len(plan.Layout)) {
		t.Errorf("block_count %d, want %d", n, len(plan.Layout))
	}
	for _, ti := range in.Tensors {
		if blk, _ := rwBlockOf(ti.Name); blk < 0 && !bytes.Equal(rwBytes(t, out, ti.Name), rwBytes(t, in, ti.Name)) {
			t.Errorf("non-block tensor %s changed", ti.Name)
		}
	}
	for j, parts := range plan.Layout {
		for _, s := range b.Suffixes {
			name := fmt.Sprintf("blk.%d.%s", j, s)
			oi := rwInfo(t, out, name)
			ii := rwInfo(t, in, fmt.Sprintf("blk.%d.%s", parts[0].Block, s))
			if oi.Type != ii.Type || !slices.Equal(oi.Dims, ii.Dims) {
				t.Errorf("%s is %s %v, want %s %v", name, oi.Type, oi.Dims, ii.Type, ii.Dims)
				continue
			}
			got := rwBytes(t, out, name)
			ws := parts
			if norms == NormsFirst && strings.Contains(s, "norm") {
				ws = []merge.Weighted{{Block: parts[0].Block, W: 1}}
			}
			copyOf := -1
			for _, w := range ws {
				if w.W == 1 {
					copyOf = w.Block
				}
			}
			if copyOf >= 0 {
				if !bytes.Equal(got, rwBytes(t, in, fmt.Sprintf("blk.%d.%s", copyOf, s))) {
					t.Errorf("%s is not a byte copy of blk.%d.%s (weights %v, norms %v)", name, copyOf, s, ws, norms)
				}
				continue
			}
			ref := make([]float64, oi.Elements())
			mag := make([]float64, len(ref))
			for _, w := range ws {
				src := refDecode(t, ii.Type, rwBytes(t, in, fmt.Sprintf("blk.%d.%s", w.Block, s)))
				for i, v := range src {
					ref[i] += w.W * v
					mag[i] += math.Abs(w.W * v)
				}
			}
			have := refDecode(t, oi.Type, got)
			bad := 0
			for i := range ref {
				// float32 arithmetic (the weights, each product, each sum)
				// plus the rounding to the output type.
				tol := 8*math.Ldexp(mag[i], -24) + refULP(oi.Type, max(math.Abs(ref[i]), math.Abs(have[i])))
				if oi.Type == gguf.TypeF32 {
					tol = 8 * math.Ldexp(mag[i], -24)
				}
				if d := math.Abs(have[i] - ref[i]); !(d <= tol) {
					if bad < 3 {
						t.Errorf("%s[%d] = %v, want %v ± %.3g (weights %v)", name, i, have[i], ref[i], tol, ws)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d elements off", name, bad, len(ref))
			}
		}
	}
}

func TestRewriteFusion(t *testing.T) {
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16} {
		t.Run(typ.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := synth.Tiny()
			cfg.Type = typ
			cfg.Arch = "qwen3" // adds per-head norms to the block
			in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, distinctNorms))
			for _, c := range []struct {
				name  string
				steps []merge.Step
			}{
				{"λ=0.3", []merge.Step{rwFuse(1, 0.3)}},
				{"λ=0.5 last pair", []merge.Step{rwFuse(2, 0.5)}},
				{"λ=1", []merge.Step{rwFuse(1, 1)}},
				{"λ=0", []merge.Step{rwFuse(1, 0)}},
				{"three blocks", []merge.Step{rwFuse(1, 0.3), rwFuse(1, 0.6)}},
				{"two fusions", []merge.Step{rwFuse(2, 0.7), rwFuse(0, 0.2)}},
			} {
				plan := rwPlan(t, 4, c.steps...)
				// The norm rule and the chunking are independent: each rule
				// runs with one chunk per tensor (the default) or with many,
				// the last one partial.
				for _, o := range []RewriteOptions{{Norms: NormsWeighted, ChunkBytes: 1000}, {Norms: NormsFirst}} {
					t.Run(fmt.Sprintf("%s/norms=%d/chunk=%d", c.name, o.Norms, o.ChunkBytes), func(t *testing.T) {
						out := rwRewrite(t, in, plan, o)
						rwCheckFused(t, in, out, plan, o.Norms)
					})
				}
			}
			// The two rules differ on the fused block's norms only.
			plan := rwPlan(t, 4, rwFuse(1, 0.3))
			first := rwBytes(t, rwRewrite(t, in, plan, RewriteOptions{Norms: NormsFirst}), "blk.1.attn_norm.weight")
			weighted := rwBytes(t, rwRewrite(t, in, plan, RewriteOptions{Norms: NormsWeighted}), "blk.1.attn_norm.weight")
			if !bytes.Equal(first, rwBytes(t, in, "blk.1.attn_norm.weight")) {
				t.Errorf("NormsFirst: blk.1.attn_norm.weight is not the first block's")
			}
			if bytes.Equal(first, weighted) {
				t.Errorf("NormsWeighted gives the same norm as NormsFirst")
			}
		})
	}
}

// TestRewriteFusionExtremesAreDrops checks that λ = 1 and λ = 0 write the
// same file as dropping the second or the first block of the pair.
func TestRewriteFusionExtremesAreDrops(t *testing.T) {
	dir := t.TempDir()
	in := rwOpen(t, rwModel(t, dir, "in.gguf", synth.Tiny(), distinctNorms))
	write := func(p *merge.Plan) []byte {
		out := rwRewrite(t, in, p, RewriteOptions{})
		b, err := os.ReadFile(out.Path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(write(rwPlan(t, 4, rwFuse(1, 1))), write(rwPlan(t, 4, rwDrop(2)))) {
		t.Errorf("fusing blocks 1 and 2 with λ=1 differs from dropping block 2")
	}
	if !bytes.Equal(write(rwPlan(t, 4, rwFuse(1, 0))), write(rwPlan(t, 4, rwDrop(1)))) {
		t.Errorf("fusing blocks 1 and 2 with λ=0 differs from dropping block 1")
	}
}
