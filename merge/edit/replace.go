package edit

import (
	"bytes"
	"fmt"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// Replacement returns the Tensor whose values are v (float32, in the
// tensor's row-major order: Info.Dims[0] values a row), encoded in
// info.Type: one float32 part of weight 1 and no fold. A weight refitted
// from calibration data (the healing stage's ffn_down) goes through it both
// in memory and in the rewrite (RewriteOptions.Replace), so that the file
// holds the bytes the search scored.
func Replacement(info gguf.TensorInfo, v []float32) (*Tensor, error) {
	if uint64(len(v)) != info.Elements() {
		return nil, fmt.Errorf("replace %s: %d values, the tensor has %d", info.Name, len(v), info.Elements())
	}
	raw, err := gguf.EncodeFloats(gguf.TypeF32, make([]byte, 4*len(v)), v)
	if err != nil {
		return nil, err
	}
	return &Tensor{Info: info, Parts: []Part{{Name: info.Name + " (refit)", Type: gguf.TypeF32, Data: bytes.NewReader(raw), W: 1}}}, nil
}
