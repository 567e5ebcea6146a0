package pipeline

import (
	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Codec decodes and encodes tensor data: the float types in pure Go
// (merge.FloatCodec, simd kernels), quantized types through ggml's type
// traits and ggml_quantize_chunk. It is the merge.Codec of every rewrite
// and in-memory edit.
type Codec struct{ merge.FloatCodec }

// Decode implements merge.Codec.
func (c Codec) Decode(t gguf.Type, src []byte, dst []float32) error {
	if gguf.IsFloat(t) {
		return c.FloatCodec.Decode(t, src, dst)
	}
	return cgo.Dequantize(int(t), src, dst)
}

// Encode implements merge.Codec.
func (c Codec) Encode(t gguf.Type, src []float32, dst []byte, rows, perRow int) error {
	if gguf.IsFloat(t) {
		return c.FloatCodec.Encode(t, src, dst, rows, perRow)
	}
	_, err := cgo.Quantize(int(t), src, dst, rows, perRow, nil)
	return err
}
