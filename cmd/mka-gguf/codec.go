package main

import (
	"encoding/json"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// ggmlCodec decodes and encodes tensor data: the float types in pure Go
// (merge.FloatCodec, simd kernels), quantized types through ggml's type
// traits and ggml_quantize_chunk.
type ggmlCodec struct{ merge.FloatCodec }

func codecFor() merge.Codec { return ggmlCodec{} }

// Decode implements merge.Codec.
func (c ggmlCodec) Decode(t gguf.Type, src []byte, dst []float32) error {
	if gguf.IsFloat(t) {
		return c.FloatCodec.Decode(t, src, dst)
	}
	return cgo.Dequantize(int(t), src, dst)
}

// Encode implements merge.Codec.
func (c ggmlCodec) Encode(t gguf.Type, src []float32, dst []byte, rows, perRow int) error {
	if gguf.IsFloat(t) {
		return c.FloatCodec.Encode(t, src, dst, rows, perRow)
	}
	_, err := cgo.Quantize(int(t), src, dst, rows, perRow, nil)
	return err
}

// writeJSON writes v as indented JSON to path, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}
