package edit

// Tests of Rewrite on synthetic GGUF models (gguf/synth): byte identity of
// copied blocks and of everything that is not a block, renumbering and
// per-layer metadata after a drop, provenance keys, bad plans. The fused
// blocks' arithmetic is in fusion_test.go, the stream's cancellation and
// memory in stream_test.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
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
func rwRewrite(t testing.TB, in *gguf.File, plan *merge.Plan, opt RewriteOptions) *gguf.File {
	t.Helper()
	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(in.Path), "out.gguf")
	os.Remove(out)
	if err := Rewrite(context.Background(), in, b, plan, out, FloatCodec{}, opt); err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	f := rwOpen(t, out)
	if _, err := arch.Inspect(f); err != nil {
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
func rwPlan(t testing.TB, original int, steps ...merge.Step) *merge.Plan {
	t.Helper()
	p, err := merge.NewPlan("test", original, steps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rwDrop(b int) merge.Step { return merge.Step{Kind: merge.StepDrop, Blocks: [2]int{b, b}} }

func rwFuse(b int, lambda float64) merge.Step {
	return merge.Step{Kind: merge.StepFuse, Blocks: [2]int{b, b + 1}, Lambda: lambda}
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
	b, err := arch.Inspect(in)
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
		case ikv.Key == b.Arch.Name+".block_count":
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
	reverse, err := merge.PlanPruneReverse(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		plan *merge.Plan
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

	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, lam := range []float64{0.5, 1} { // zero weights count too
		err = Rewrite(context.Background(), in, b, rwPlan(t, 4, rwFuse(0, lam)), filepath.Join(dir, "bad.gguf"), nil, RewriteOptions{})
		if !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), "llama.test_per_layer") {
			t.Errorf("λ=%v: fusing blocks 0 and 1 whose per-layer values differ: %v, want ErrUnsupported naming the key", lam, err)
		}
	}
	rwDirOnly(t, dir, "in.gguf")
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
	b, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	wrongCount := rwPlan(t, 5, rwDrop(4))
	tampered := rwPlan(t, 4, rwFuse(1, 0.5))
	tampered.Layout[1][0].W = 0.75
	for name, p := range map[string]*merge.Plan{"plan for 5 blocks": wrongCount, "layout not from steps": tampered} {
		err := Rewrite(context.Background(), in, b, p, filepath.Join(dir, "out.gguf"), nil, RewriteOptions{})
		if !errors.Is(err, merge.ErrPlan) {
			t.Errorf("%s: %v, want ErrPlan", name, err)
		}
	}
	rwDirOnly(t, dir, "in.gguf")
}
