package quant

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

func TestImatrixAddValues(t *testing.T) {
	im := NewImatrix()
	// Two rows of 3 columns, then one more row.
	im.Add("w.weight", 3, 2, []float32{1, 2, 3, -1, 0, 1})
	im.Add("w.weight", 3, 1, []float32{2, 2, 2})
	im.Add("w.weight", 4, 1, []float32{9, 9, 9, 9}) // wrong width: ignored
	im.Add("v.weight", 2, 1, []float32{3, 4})
	if !reflect.DeepEqual(im.Sums["w.weight"], []float64{6, 8, 14}) || im.Counts["w.weight"] != 3 {
		t.Fatalf("sums %v count %d", im.Sums["w.weight"], im.Counts["w.weight"])
	}
	v := im.Values()
	want := map[string][]float32{"w.weight": {2, 8.0 / 3, 14.0 / 3}, "v.weight": {9, 16}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("values %v, want %v", v, want)
	}
}

func TestImatrixSaveLoad(t *testing.T) {
	im := NewImatrix()
	im.Chunks, im.ChunkSize, im.Datasets = 7, 128, []string{"calib.txt"}
	r := rand.New(rand.NewPCG(1, 2))
	for _, w := range []string{"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "output.weight"} {
		d := make([]float32, 64*5)
		for i := range d {
			d[i] = float32(r.NormFloat64())
		}
		im.Add(w, 64, 5, d)
		im.Add(w, 64, 2, d[:128])
	}
	p := filepath.Join(t.TempDir(), "imatrix.gguf")
	if err := im.Save(p); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := f.String("general.type"); typ != "imatrix" || len(f.Tensors) != 6 {
		t.Fatalf("general.type %q, %d tensors", typ, len(f.Tensors))
	}
	i, ok := f.Tensor("blk.0.attn_q.weight.in_sum2")
	if !ok || !reflect.DeepEqual(f.Tensors[i].Dims, []uint64{64, 1}) || f.Tensors[i].Type != gguf.TypeF32 {
		t.Fatalf("in_sum2 tensor: %v %v", ok, f.Tensors[i])
	}
	f.Close()
	back, err := LoadImatrix(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Chunks != 7 || back.ChunkSize != 128 || !reflect.DeepEqual(back.Datasets, im.Datasets) || !reflect.DeepEqual(back.Counts, im.Counts) {
		t.Fatalf("loaded %d/%d %v %v", back.Chunks, back.ChunkSize, back.Datasets, back.Counts)
	}
	for name, s := range im.Sums {
		b := back.Sums[name]
		if len(b) != len(s) {
			t.Fatalf("%s: %d sums back, want %d", name, len(b), len(s))
		}
		for j := range s {
			if float32(s[j]) != float32(b[j]) {
				t.Fatalf("%s[%d] = %v, want %v", name, j, b[j], s[j])
			}
		}
	}
	if _, err := LoadImatrix(writeSynth(t, 64, 128)); err == nil || !strings.Contains(err.Error(), "not a GGUF importance matrix") {
		t.Fatalf("a model loaded as an imatrix: %v", err)
	}
}

func writeSynth(t *testing.T, embd, ffn int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.gguf")
	cfg := synth.Config{Arch: "llama", Blocks: 2, Embd: embd, FFN: ffn, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 128, Type: gguf.TypeF16, Seed: 3}
	if err := synth.Write(p, cfg); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestQuantizeWithImatrix quantizes a synth model to Q4_K_M with and without
// a (skewed, random) importance matrix: the tensor data must differ; IQ2_XXS,
// refused without one, succeeds with it.
func TestQuantizeWithImatrix(t *testing.T) {
	in := writeSynth(t, 256, 512)
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	im := NewImatrix()
	r := rand.New(rand.NewPCG(5, 6))
	for _, ti := range f.Tensors {
		if len(ti.Dims) != 2 || !strings.HasSuffix(ti.Name, ".weight") {
			continue
		}
		cols := int(ti.Dims[0])
		d := make([]float32, cols*4)
		for i := range d {
			// A few strongly active columns, as real activations have.
			d[i] = float32(r.NormFloat64() * math.Exp(3*r.Float64()))
		}
		im.Add(ti.Name, cols, 4, d)
	}
	f.Close()
	dir := t.TempDir()
	ft, _ := Parse("Q4_K_M")
	plain, with := filepath.Join(dir, "plain.gguf"), filepath.Join(dir, "with.gguf")
	if err := File(in, plain, ft, Options{Threads: 2}); err != nil {
		t.Fatal(err)
	}
	if err := File(in, with, ft, Options{Threads: 2, Imatrix: im.Values()}); err != nil {
		t.Fatal(err)
	}
	a, err := gguf.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := gguf.Open(with)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var total, differ, tensorsDiffer int
	for i, ti := range a.Tensors {
		j, ok := b.Tensor(ti.Name)
		if !ok || b.Tensors[j].Type != ti.Type {
			t.Fatalf("%s missing or of another type with the imatrix", ti.Name)
		}
		x, _ := a.TensorBytes(i)
		y, _ := b.TensorBytes(j)
		total += len(x)
		if !bytes.Equal(x, y) {
			tensorsDiffer++
		}
		for k := range x {
			if x[k] != y[k] {
				differ++
			}
		}
	}
	t.Logf("Q4_K_M: %d of %d tensor bytes (%d of %d tensors) differ with the imatrix", differ, total, tensorsDiffer, len(a.Tensors))
	if differ == 0 {
		t.Fatal("the importance matrix changed nothing")
	}
	iq, err := Parse("IQ2_XXS")
	if err != nil {
		t.Fatal(err)
	}
	if err := File(in, filepath.Join(dir, "iq2.gguf"), iq, Options{Threads: 2, Imatrix: im.Values()}); err != nil {
		t.Fatalf("IQ2_XXS with an imatrix: %v", err)
	}
}
