package edit

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// randomAlignment returns a d×d alignment with entries near the identity.
func randomAlignment(d int, seed uint64) *merge.Alignment {
	r := rand.New(rand.NewPCG(seed, seed))
	a := merge.Identity(d)
	for i := range a.T {
		a.T[i] += float32(0.1 * r.NormFloat64())
	}
	return a
}

// foldRef returns Tᵀ W for W of d rows of perRow values, in float64.
func foldRef(a *merge.Alignment, w []float64, perRow int) []float64 {
	d := a.D
	out := make([]float64, len(w))
	for i := range d {
		for c := range perRow {
			for k := range d {
				out[i*perRow+c] += float64(a.T[k*d+i]) * w[k*perRow+c]
			}
		}
	}
	return out
}

// A rewrite with an alignment folds it into the output block's ffn_down
// (W ← Tᵀ W) and nothing else, in the tensor's own type, whatever the
// chunk size; a no-part Tensor is zero; an alignment of the wrong size is
// refused before any file is written.
func TestRewriteFold(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	in := rwOpen(t, rwModel(t, dir, "in.gguf", cfg, nil))
	a := randomAlignment(cfg.Embd, 9)
	plan := rwPlan(t, cfg.Blocks, rwDrop(2))
	for _, chunk := range []int{0, 1000} {
		out := rwRewrite(t, in, plan, RewriteOptions{Align: map[int]*merge.Alignment{1: a}, ChunkBytes: chunk})
		info := rwInfo(t, in, "blk.1.ffn_down.weight")
		perRow := int(info.Dims[0])
		want := foldRef(a, refDecode(t, info.Type, rwBytes(t, in, info.Name)), perRow)
		got := refDecode(t, info.Type, rwBytes(t, out, "blk.1.ffn_down.weight"))
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-5*(1+math.Abs(want[i])) {
				t.Fatalf("chunk %d: folded ffn_down value %d is %g, want %g", chunk, i, got[i], want[i])
			}
		}
		for _, name := range []string{"blk.1.attn_output.weight", "blk.0.ffn_down.weight"} {
			if !bytes.Equal(rwBytes(t, in, name), rwBytes(t, out, name)) {
				t.Errorf("chunk %d: %s changed, but only block 1's ffn_down folds the alignment", chunk, name)
			}
		}
		if !bytes.Equal(rwBytes(t, in, "blk.3.ffn_down.weight"), rwBytes(t, out, "blk.2.ffn_down.weight")) {
			t.Errorf("chunk %d: block 3 (now 2) is not a copy", chunk)
		}
	}

	zero := &Tensor{Info: gguf.TensorInfo{Name: "z", Type: gguf.TypeF16, Dims: []uint64{8, 3}}}
	b, err := zero.Bytes(context.Background(), FloatCodec{})
	if err != nil || !bytes.Equal(b, make([]byte, 8*3*2)) {
		t.Errorf("a tensor of no parts is %v (%v), want 48 zero bytes", b, err)
	}

	m, err := arch.Inspect(in)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.gguf")
	err = Rewrite(context.Background(), in, m, plan, bad, FloatCodec{}, RewriteOptions{Align: map[int]*merge.Alignment{1: merge.Identity(cfg.Embd + 1)}})
	if !errors.Is(err, merge.ErrAlign) {
		t.Errorf("an alignment of the wrong size: %v, want ErrAlign", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a refused rewrite left %s (%v)", bad, err)
	}
}
