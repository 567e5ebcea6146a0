package edit

import (
	"context"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// A replacement holds the given values, encoded in the tensor's type
// (F16: rounded as F16), and refuses values of the wrong count.
func TestReplacement(t *testing.T) {
	info := gguf.TensorInfo{Name: "blk.0.ffn_down.weight", Type: gguf.TypeF16, Dims: []uint64{3, 2}}
	v := []float32{0.1, -2, 3.5, 1e-3, 7, -0.25}
	r, err := Replacement(info, v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Bytes(context.Background(), FloatCodec{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := gguf.EncodeFloats(gguf.TypeF16, make([]byte, 2*len(v)), v)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(want) {
		t.Fatalf("replacement bytes %x, want %x", b, want)
	}
	if _, err := Replacement(info, v[:5]); err == nil {
		t.Fatal("5 values for a 3×2 tensor: no error")
	}
}
