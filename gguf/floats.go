package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/mka-gguf/mka-gguf/simd"
)

// IsFloat reports whether t is one of the float types F32, F16 or BF16,
// which DecodeFloats and EncodeFloats convert without ggml.
func IsFloat(t Type) bool { return t == TypeF32 || t == TypeF16 || t == TypeBF16 }

// DecodeFloats converts tensor data of a float type (little-endian F32, F16
// or BF16) to float32; src holds exactly len(dst) elements. The half
// conversions use the simd kernels.
func DecodeFloats(t Type, src []byte, dst []float32) error {
	if !IsFloat(t) {
		return fmt.Errorf("decode: type %s is not a float type", t)
	}
	if want := int(t.TypeSize()) * len(dst); len(src) != want {
		return fmt.Errorf("decode %s: %d bytes for %d values", t, len(src), len(dst))
	}
	if t == TypeF32 {
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
		return nil
	}
	h := make([]uint16, len(dst))
	for i := range h {
		h[i] = binary.LittleEndian.Uint16(src[2*i:])
	}
	if t == TypeF16 {
		simd.F16ToF32(dst, h)
	} else {
		simd.BF16ToF32(dst, h)
	}
	return nil
}

// EncodeFloats converts src to tensor data of a float type (little-endian
// F32, F16 or BF16, rounding to nearest even as ggml does) in dst, which
// holds at least the encoded size; it returns the used part.
func EncodeFloats(t Type, dst []byte, src []float32) ([]byte, error) {
	if !IsFloat(t) {
		return nil, fmt.Errorf("encode: type %s is not a float type", t)
	}
	n := int(t.TypeSize()) * len(src)
	if len(dst) < n {
		return nil, fmt.Errorf("encode %s: %d bytes for %d values", t, len(dst), len(src))
	}
	if t == TypeF32 {
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
		return dst[:n], nil
	}
	h := make([]uint16, len(src))
	if t == TypeF16 {
		simd.F32ToF16(h, src)
	} else {
		simd.F32ToBF16(h, src)
	}
	for i, v := range h {
		binary.LittleEndian.PutUint16(dst[2*i:], v)
	}
	return dst[:n], nil
}
