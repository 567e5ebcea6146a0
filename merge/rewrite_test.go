package merge

// Tests of Rewrite on synthetic GGUF models (gguf/synth): byte identity of
// copied blocks and of everything that is not a block, renumbering and
// per-layer metadata after a drop, the arithmetic of fused blocks for each
// float type (checked against a reference decoder written here), the norm
// rules, provenance keys, cancellation and bounded memory.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// rwModel writes the synth model cfg to dir/name and returns its path. When
// edit is not nil the model is passed through a gguf.Edit first.
func rwModel(t testing.TB, dir, name string, cfg synth.Config, edit func(f *gguf.File, e *gguf.Edit)) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if edit == nil {
		if err := synth.Write(path, cfg); err != nil {
			t.Fatal(err)
		}
		return path
	}
	raw := filepath.Join(dir, "raw-"+name)
	if err := synth.Write(raw, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := f.Edit()
	edit(f, e)
	if err := e.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(raw); err != nil {
		t.Fatal(err)
	}
	return path
}

// rwOpen opens path for the rest of the test.
func rwOpen(t testing.TB, path string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// rwBytes returns the data of the named tensor.
func rwBytes(t testing.TB, f *gguf.File, name string) []byte {
	t.Helper()
	i, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %s", f.Path, name)
	}
	b := make([]byte, f.Tensors[i].Size())
	if _, err := io.ReadFull(f.TensorReader(i), b); err != nil {
		t.Fatalf("%s: read %s: %v", f.Path, name, err)
	}
	return b
}

// rwInfo returns the info of the named tensor.
func rwInfo(t testing.TB, f *gguf.File, name string) gguf.TensorInfo {
	t.Helper()
	i, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %s", f.Path, name)
	}
	return f.Tensors[i]
}

// rwRewrite rewrites the model at in with plan into dir/out.gguf and opens
// the result.
func rwRewrite(t testing.TB, in *gguf.File, plan *Plan, opt RewriteOptions) *gguf.File {
	t.Helper()
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(in.Path), "out.gguf")
	os.Remove(out)
	if err := Rewrite(context.Background(), in, b, plan, out, FloatCodec{}, opt); err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	f := rwOpen(t, out)
	if _, err := InspectBlocks(f); err != nil {
		t.Errorf("the output is not a mergeable model: %v", err)
	}
	var data int64
	for _, ti := range f.Tensors {
		data += int64(ti.Size())
	}
	if want := OutputSize(in, b, plan); data != want {
		t.Errorf("output holds %d bytes of tensor data, OutputSize said %d", data, want)
	}
	return f
}

// rwPlan is NewPlan that fails the test on error.
func rwPlan(t testing.TB, original int, steps ...Step) *Plan {
	t.Helper()
	p, err := NewPlan("test", original, steps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rwDrop(b int) Step { return Step{Kind: StepDrop, Blocks: [2]int{b, b}} }

func rwFuse(b int, lambda float64) Step {
	return Step{Kind: StepFuse, Blocks: [2]int{b, b + 1}, Lambda: lambda}
}

// rwDirOnly checks that dir holds exactly the given file names (no output,
// no temporary file).
func rwDirOnly(t testing.TB, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, e := range ents {
		have = append(have, e.Name())
	}
	slices.Sort(have)
	names = slices.Clone(names)
	slices.Sort(names)
	if !slices.Equal(have, names) {
		t.Errorf("%s holds %q, want only %q", dir, have, names)
	}
}

// rwBlockOf splits a tensor name into block and suffix; block -1 for a
// tensor outside the blocks.
func rwBlockOf(name string) (int, string) {
	var b int
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return -1, name
	}
	num, suffix, _ := strings.Cut(rest, ".")
	if _, err := fmt.Sscanf(num, "%d", &b); err != nil {
		return -1, name
	}
	return b, suffix
}

// rwCheckKeep checks an output whose output blocks are single original
// blocks: out block j is a byte copy of in block keep[j], the non-block
// tensors and every KV other than block_count and the per-layer arrays are
// identical, and the tensor order is the input's with the blocks in their
// new order.
func rwCheckKeep(t *testing.T, in, out *gguf.File, keep []int, perLayer []string) {
	t.Helper()
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != in.Version || out.Alignment != in.Alignment {
		t.Errorf("version/alignment %d/%d, want %d/%d", out.Version, out.Alignment, in.Version, in.Alignment)
	}

	// Tensors: expected order and sources.
	type want struct {
		name, src string
	}
	var wants []want
	emitted := false
	for _, ti := range in.Tensors {
		if blk, _ := rwBlockOf(ti.Name); blk >= 0 {
			if !emitted {
				emitted = true
				for j, k := range keep {
					for _, s := range b.Suffixes {
						wants = append(wants, want{fmt.Sprintf("blk.%d.%s", j, s), fmt.Sprintf("blk.%d.%s", k, s)})
					}
				}
			}
			continue
		}
		wants = append(wants, want{ti.Name, ti.Name})
	}
	if len(out.Tensors) != len(wants) {
		t.Fatalf("output has %d tensors, want %d", len(out.Tensors), len(wants))
	}
	for i, w := range wants {
		ot := out.Tensors[i]
		if ot.Name != w.name {
			t.Errorf("tensor %d is %s, want %s", i, ot.Name, w.name)
			continue
		}
		it := rwInfo(t, in, w.src)
		if ot.Type != it.Type || !slices.Equal(ot.Dims, it.Dims) {
			t.Errorf("%s is %s %v, want %s %v like %s", ot.Name, ot.Type, ot.Dims, it.Type, it.Dims, w.src)
		}
		if !bytes.Equal(rwBytes(t, out, w.name), rwBytes(t, in, w.src)) {
			t.Errorf("output %s differs from input %s", w.name, w.src)
		}
	}

	// Metadata.
	isPer := map[string]bool{}
	for _, k := range perLayer {
		isPer[k] = true
	}
	if !slices.Equal(b.PerLayerKeys, perLayer) {
		t.Errorf("InspectBlocks found per-layer keys %q, want %q", b.PerLayerKeys, perLayer)
	}
	if len(out.KVs) != len(in.KVs) {
		t.Fatalf("output has %d KVs, want %d", len(out.KVs), len(in.KVs))
	}
	for i, ikv := range in.KVs {
		okv := out.KVs[i]
		if okv.Key != ikv.Key {
			t.Errorf("KV %d is %s, want %s", i, okv.Key, ikv.Key)
			continue
		}
		switch {
		case ikv.Key == b.Arch+".block_count":
			if okv.Value.Type != ikv.Value.Type {
				t.Errorf("%s has type %s, want %s", ikv.Key, okv.Value.Type, ikv.Value.Type)
			}
			if n, _ := out.Uint(ikv.Key); n != uint64(len(keep)) {
				t.Errorf("%s = %d, want %d", ikv.Key, n, len(keep))
			}
		case isPer[ikv.Key]:
			a := ikv.Value.V.(gguf.Array)
			v := reflect.ValueOf(a.Values)
			w := reflect.MakeSlice(v.Type(), len(keep), len(keep))
			for j, k := range keep {
				w.Index(j).Set(v.Index(k))
			}
			wv := gguf.Value{Type: gguf.ValueArray, V: gguf.Array{Elem: a.Elem, Values: w.Interface()}}
			if !reflect.DeepEqual(okv.Value, wv) {
				t.Errorf("%s = %v, want %v", ikv.Key, okv.Value.V, wv.V)
			}
		default:
			if !reflect.DeepEqual(okv.Value, ikv.Value) {
				t.Errorf("%s changed: %v, want %v", ikv.Key, okv.Value, ikv.Value)
			}
		}
	}
}

func TestRewriteIdentity(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3"} {
		t.Run(arch, func(t *testing.T) {
			dir := t.TempDir()
			cfg := synth.Tiny()
			cfg.Arch = arch
			in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
			out := rwRewrite(t, in, rwPlan(t, 4), RewriteOptions{})
			rwCheckKeep(t, in, out, []int{0, 1, 2, 3}, nil)
			if !reflect.DeepEqual(out.KVs, in.KVs) {
				t.Errorf("KVs differ")
			}
			// Nothing changes, so the file is the same, byte for byte.
			a, _ := os.ReadFile(in.Path)
			b, _ := os.ReadFile(out.Path)
			if !bytes.Equal(a, b) {
				t.Errorf("the identity rewrite is not byte-identical to its input (%d vs %d bytes)", len(b), len(a))
			}
		})
	}
}

// perLayerEdit adds per-layer metadata arrays (and decoys that are not
// per-layer) to a 4-block llama model.
func perLayerEdit(_ *gguf.File, e *gguf.Edit) {
	e.SetKV(gguf.KV{Key: "llama.attention.head_count_kv", Value: gguf.ArrayOf([]uint32{1, 2, 4, 2})})
	e.SetKV(gguf.KV{Key: "llama.test_per_layer", Value: gguf.ArrayOf([]uint32{10, 11, 12, 13})})
	e.SetKV(gguf.KV{Key: "llama.test_names", Value: gguf.Strings([]string{"zero", "one", "two", "three"})})
	e.SetKV(gguf.KV{Key: "llama.test_floats", Value: gguf.Float32s([]float32{0.5, 1.5, 2.5, 3.5})})
	// Not per-layer: another prefix, or another length.
	e.SetKV(gguf.KV{Key: "general.test_four", Value: gguf.ArrayOf([]uint32{20, 21, 22, 23})})
	e.SetKV(gguf.KV{Key: "llama.test_five", Value: gguf.ArrayOf([]uint32{30, 31, 32, 33, 34})})
}

var perLayerKeys = []string{"llama.attention.head_count_kv", "llama.test_per_layer", "llama.test_names", "llama.test_floats"}

func TestRewriteDrop(t *testing.T) {
	dir := t.TempDir()
	in := rwOpen(t, rwModel(t, dir, "in.gguf", synth.Tiny(), perLayerEdit))
	if n, _ := in.Uint("llama.block_count"); n != 4 {
		t.Fatalf("block_count %d", n)
	}
	reverse, err := PlanPruneReverse(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		plan *Plan
		keep []int
	}{
		{"drop 1", rwPlan(t, 4, rwDrop(1)), []int{0, 2, 3}},
		{"reverse", reverse, []int{0, 1, 2}},
		{"drop 0", rwPlan(t, 4, rwDrop(0)), []int{1, 2, 3}},
		{"drop 3 and 1", rwPlan(t, 4, rwDrop(3), rwDrop(1)), []int{0, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := rwRewrite(t, in, c.plan, RewriteOptions{})
			rwCheckKeep(t, in, out, c.keep, perLayerKeys)
			for _, ti := range out.Tensors {
				if b, _ := rwBlockOf(ti.Name); b >= len(c.keep) {
					t.Errorf("output has %s with only %d blocks", ti.Name, len(c.keep))
				}
			}
			// The explicit example: after dropping block 1, blk.1 is the
			// input's blk.2.
			if c.name == "drop 1" {
				if !bytes.Equal(rwBytes(t, out, "blk.1.ffn_down.weight"), rwBytes(t, in, "blk.2.ffn_down.weight")) {
					t.Errorf("blk.1.ffn_down.weight is not the input's blk.2.ffn_down.weight")
				}
				kv, _ := out.KV("llama.test_per_layer")
				if got := kv.Value.V.(gguf.Array).Values; !reflect.DeepEqual(got, []uint32{10, 12, 13}) {
					t.Errorf("llama.test_per_layer = %v, want [10 12 13]", got)
				}
				kv, _ = out.KV("general.test_four")
				if got := kv.Value.V.(gguf.Array).Values; !reflect.DeepEqual(got, []uint32{20, 21, 22, 23}) {
					t.Errorf("general.test_four = %v, want it unchanged", got)
				}
			}
		})
	}
}

// TestRewritePerLayerFusion checks the per-layer arrays of a fusion: equal
// entries are kept once, different ones are refused before anything is
// written.
func TestRewritePerLayerFusion(t *testing.T) {
	dir := t.TempDir()
	in := rwOpen(t, rwModel(t, dir, "in.gguf", synth.Tiny(), func(_ *gguf.File, e *gguf.Edit) {
		e.SetKV(gguf.KV{Key: "llama.test_per_layer", Value: gguf.ArrayOf([]uint32{10, 11, 11, 13})})
	}))
	out := rwRewrite(t, in, rwPlan(t, 4, rwFuse(1, 0.5)), RewriteOptions{})
	kv, _ := out.KV("llama.test_per_layer")
	if got := kv.Value.V.(gguf.Array).Values; !reflect.DeepEqual(got, []uint32{10, 11, 13}) {
		t.Errorf("llama.test_per_layer = %v, want [10 11 13]", got)
	}
	os.Remove(out.Path)

	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, lam := range []float64{0.5, 1} { // zero weights count too
		err = Rewrite(context.Background(), in, b, rwPlan(t, 4, rwFuse(0, lam)), filepath.Join(dir, "bad.gguf"), nil, RewriteOptions{})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "llama.test_per_layer") {
			t.Errorf("λ=%v: fusing blocks 0 and 1 whose per-layer values differ: %v, want ErrUnsupported naming the key", lam, err)
		}
	}
	rwDirOnly(t, dir, "in.gguf")
}

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
func rwCheckFused(t *testing.T, in, out *gguf.File, plan *Plan, norms NormRule) {
	t.Helper()
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := out.Uint(b.Arch + ".block_count"); n != uint64(len(plan.Layout)) {
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
				ws = []Weighted{{Block: parts[0].Block, W: 1}}
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
				steps []Step
			}{
				{"λ=0.3", []Step{rwFuse(1, 0.3)}},
				{"λ=0.5 last pair", []Step{rwFuse(2, 0.5)}},
				{"λ=1", []Step{rwFuse(1, 1)}},
				{"λ=0", []Step{rwFuse(1, 0)}},
				{"three blocks", []Step{rwFuse(1, 0.3), rwFuse(1, 0.6)}},
				{"two fusions", []Step{rwFuse(2, 0.7), rwFuse(0, 0.2)}},
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
	write := func(p *Plan) []byte {
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

func TestRewriteMetadata(t *testing.T) {
	dir := t.TempDir()
	in := rwOpen(t, rwModel(t, dir, "in.gguf", synth.Tiny(), nil))
	meta := []gguf.KV{
		{Key: "mka.method", Value: gguf.String("test")},
		{Key: "mka.source_block_count", Value: gguf.Uint32(4)},
		{Key: "mka.layout", Value: gguf.Strings([]string{"0=0:1", "1=1:0.5+2:0.5", "2=3:1"})},
		{Key: "general.name", Value: gguf.String("merged")},
	}
	out := rwRewrite(t, in, rwPlan(t, 4, rwFuse(1, 0.5)), RewriteOptions{Metadata: meta})
	for _, kv := range meta {
		got, ok := out.KV(kv.Key)
		if !ok {
			t.Errorf("no %s in the output", kv.Key)
		} else if !reflect.DeepEqual(got.Value, kv.Value) {
			t.Errorf("%s = %v, want %v", kv.Key, got.Value, kv.Value)
		}
	}
	// A replaced key keeps its place; new keys follow the input's.
	if len(out.KVs) != len(in.KVs)+3 {
		t.Errorf("%d KVs, want %d", len(out.KVs), len(in.KVs)+3)
	}
	for i, kv := range in.KVs {
		if i < len(out.KVs) && out.KVs[i].Key != kv.Key {
			t.Errorf("KV %d is %s, want %s", i, out.KVs[i].Key, kv.Key)
		}
	}
}

func TestRewriteRejectsBadPlan(t *testing.T) {
	dir := t.TempDir()
	in := rwOpen(t, rwModel(t, dir, "in.gguf", synth.Tiny(), nil))
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	wrongCount := rwPlan(t, 5, rwDrop(4))
	tampered := rwPlan(t, 4, rwFuse(1, 0.5))
	tampered.Layout[1][0].W = 0.75
	for name, p := range map[string]*Plan{"plan for 5 blocks": wrongCount, "layout not from steps": tampered} {
		err := Rewrite(context.Background(), in, b, p, filepath.Join(dir, "out.gguf"), nil, RewriteOptions{})
		if !errors.Is(err, ErrPlan) {
			t.Errorf("%s: %v, want ErrPlan", name, err)
		}
	}
	rwDirOnly(t, dir, "in.gguf")
}

func TestRewriteCancel(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Type = gguf.TypeF16
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.gguf")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, c := range []struct {
		name     string
		plan     *Plan
		progress bool
	}{
		{"fusion", rwPlan(t, 4, rwFuse(1, 0.5)), false},
		{"fusion with progress", rwPlan(t, 4, rwFuse(1, 0.5)), true},
		{"drop with progress", rwPlan(t, 4, rwDrop(1)), true},
		// Only copies: no fused chunk between which to check the context.
		{"drop", rwPlan(t, 4, rwDrop(1)), false},
	} {
		t.Run(c.name+"/before", func(t *testing.T) {
			opt := RewriteOptions{}
			if c.progress {
				opt.Progress = func(done, total int64) {}
			}
			err := Rewrite(cancelled, in, b, c.plan, out, nil, opt)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Rewrite with a cancelled context: %v, want context.Canceled", err)
			}
			rwDirOnly(t, dir, "in.gguf")
			os.Remove(out)
		})
	}

	// Cancelled during the write, by the progress callback after the
	// first tensor: the write stops, and an existing output is untouched.
	t.Run("during", func(t *testing.T) {
		old := []byte("an older output")
		if err := os.WriteFile(out, old, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(out)
		for _, chunk := range []int{0, 1000} {
			ctx, cancel := context.WithCancel(context.Background())
			calls := 0
			err := Rewrite(ctx, in, b, rwPlan(t, 4, rwFuse(1, 0.5)), out, nil, RewriteOptions{ChunkBytes: chunk,
				Progress: func(done, total int64) {
					calls++
					cancel()
				}})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("chunk %d: Rewrite cancelled midway: %v, want context.Canceled", chunk, err)
			}
			if calls != 1 {
				t.Errorf("chunk %d: progress called %d times after the cancel", chunk, calls)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, old) {
				t.Errorf("chunk %d: the existing output changed", chunk)
			}
			rwDirOnly(t, dir, "in.gguf", "out.gguf")
		}
	})
}

// heapPeak samples HeapInuse until stop is called and returns the peak.
func heapPeak() (sample func(), stop func() uint64) {
	var mu sync.Mutex
	var peak uint64
	sample = func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return sample, func() uint64 {
		close(done)
		wg.Wait()
		sample()
		return peak
	}
}

// TestRewriteMemoryBounded rewrites a ~64 MiB F16 model with fusions and
// checks that the Go heap grows by far less than the model: by at most three
// blocks in float32 plus 16 MiB, and less than half the file.
func TestRewriteMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 64 MiB model")
	}
	dir := t.TempDir()
	cfg := synth.Config{Arch: "llama", Blocks: 40, Embd: 256, FFN: 704, Heads: 4, KVHeads: 4, Vocab: 4096, Ctx: 256, Type: gguf.TypeF16, Seed: 3}
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	blockElems := block0Elements(in)
	blockF32 := 4 * blockElems
	// Fusions spread over the model, highest first so that indices are
	// original ones; one three-block fusion.
	plan := rwPlan(t, 40, rwFuse(30, 0.5), rwFuse(20, 0.25), rwFuse(10, 0.75), rwFuse(0, 0.5), rwFuse(0, 0.4))
	out := filepath.Join(dir, "out.gguf")

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sample, stop := heapPeak()
	err = Rewrite(context.Background(), in, b, plan, out, nil, RewriteOptions{ChunkBytes: 256 << 10,
		Progress: func(done, total int64) { sample() }})
	peak := stop()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	limit := min(3*int64(blockF32)+16<<20, in.Size/2)
	t.Logf("model %.1f MiB, one block %.1f MiB in float32; heap in use %.1f MiB before, peak %.1f MiB (growth %.1f MiB, limit %.1f MiB); allocated %.1f MiB in all",
		float64(in.Size)/(1<<20), float64(blockF32)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(peak)/(1<<20),
		float64(growth)/(1<<20), float64(limit)/(1<<20), float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	if growth > limit {
		t.Errorf("heap grew by %.1f MiB rewriting a %.1f MiB model, want at most %.1f MiB", float64(growth)/(1<<20), float64(in.Size)/(1<<20), float64(limit)/(1<<20))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(in.Size) {
		t.Errorf("allocated %.1f MiB in all rewriting a %.1f MiB model", float64(alloc)/(1<<20), float64(in.Size)/(1<<20))
	}
	f := rwOpen(t, out)
	if n, _ := f.Uint("llama.block_count"); n != 35 {
		t.Errorf("block_count %d, want 35", n)
	}
}

// TestRewriteAllocProportional checks that a fusion allocates in proportion
// to the tensors it fuses, not to ChunkBytes: with the default 16 MiB
// chunk, fusing two blocks of a 1 MB model must not allocate a 16 MiB
// working set for each small tensor.
func TestRewriteAllocProportional(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Type = gguf.TypeF16
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	b, err := InspectBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	blockElems := block0Elements(in)
	plan := rwPlan(t, 4, rwFuse(1, 0.5))
	out := filepath.Join(dir, "out.gguf")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err = Rewrite(context.Background(), in, b, plan, out, nil, RewriteOptions{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// Decoding two sources, the float32 accumulator and scratch, the raw
	// and encoded bytes: a few times one block in float32, plus the
	// writer's buffers.
	alloc := after.TotalAlloc - before.TotalAlloc
	limit := 16*4*blockElems + 4<<20
	t.Logf("one block %.2f MiB in float32; the rewrite allocated %.1f MiB (limit %.1f MiB)",
		float64(4*blockElems)/(1<<20), float64(alloc)/(1<<20), float64(limit)/(1<<20))
	if alloc > limit {
		t.Errorf("fusing one pair of blocks of %.2f MiB (float32) allocated %.1f MiB: the chunk buffers are not capped at the tensor's size",
			float64(4*blockElems)/(1<<20), float64(alloc)/(1<<20))
	}
}

// block0Elements returns the number of weights in block 0 of f.
func block0Elements(f *gguf.File) uint64 {
	var n uint64
	for _, ti := range f.Tensors {
		if blk, _ := rwBlockOf(ti.Name); blk == 0 {
			n += ti.Elements()
		}
	}
	return n
}
