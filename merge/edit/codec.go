package edit

import (
	"fmt"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// Codec converts tensor data between a GGUF tensor type and float32. The
// float types (F32, F16, BF16) are handled here in pure Go with simd
// kernels (FloatCodec); quantized types need ggml, which callers plug in
// (this package does not import cgo).
type Codec interface {
	// Decode converts len(dst) elements of type t from src.
	Decode(t gguf.Type, src []byte, dst []float32) error
	// Encode converts rows×perRow float32 values into dst, which holds
	// exactly rows·t.RowSize(perRow) bytes.
	Encode(t gguf.Type, src []float32, dst []byte, rows, perRow int) error
}

// FloatCodec is the Codec of the float types F32, F16 and BF16
// (gguf.DecodeFloats and gguf.EncodeFloats).
type FloatCodec struct{}

// Decode implements Codec.
func (FloatCodec) Decode(t gguf.Type, src []byte, dst []float32) error {
	if !gguf.IsFloat(t) {
		return fmt.Errorf("decode: type %s needs ggml's dequantizer", t)
	}
	return gguf.DecodeFloats(t, src, dst)
}

// Encode implements Codec.
func (FloatCodec) Encode(t gguf.Type, src []float32, dst []byte, rows, perRow int) error {
	if !gguf.IsFloat(t) {
		return fmt.Errorf("encode: type %s needs ggml's quantizer", t)
	}
	_, err := gguf.EncodeFloats(t, dst, src)
	return err
}
