// Package ggmlcodec is the edit.Codec of every GGUF tensor type, for the
// rewrite and the in-memory editor: the float types in pure Go
// (edit.FloatCodec, simd kernels), quantized types through ggml's type
// traits and ggml_quantize_chunk (package cgo), which package edit may not
// import.
package ggmlcodec

import (
	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// Codec is the edit.Codec of every type ggml knows.
type Codec struct{ edit.FloatCodec }

// Decode implements edit.Codec.
func (c Codec) Decode(t gguf.Type, src []byte, dst []float32) error {
	if gguf.IsFloat(t) {
		return c.FloatCodec.Decode(t, src, dst)
	}
	return cgo.Dequantize(int(t), src, dst)
}

// Encode implements edit.Codec.
func (c Codec) Encode(t gguf.Type, src []float32, dst []byte, rows, perRow int) error {
	if gguf.IsFloat(t) {
		return c.FloatCodec.Encode(t, src, dst, rows, perRow)
	}
	_, err := cgo.Quantize(int(t), src, dst, rows, perRow, nil)
	return err
}
