package gguf

import (
	"fmt"
	"math/bits"
	"strings"
)

// Type is a ggml tensor type id as stored in a tensor info (enum ggml_type).
type Type uint32

// Tensor types, with llama.cpp's names. Ids 4 and 5 (Q4_2, Q4_3), 31-33
// (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) and 36-38 (IQ4_NL_4_4, ...) were removed from
// ggml and are unknown here.
const (
	TypeF32     Type = 0
	TypeF16     Type = 1
	TypeQ4_0    Type = 2
	TypeQ4_1    Type = 3
	TypeQ5_0    Type = 6
	TypeQ5_1    Type = 7
	TypeQ8_0    Type = 8
	TypeQ8_1    Type = 9
	TypeQ2_K    Type = 10
	TypeQ3_K    Type = 11
	TypeQ4_K    Type = 12
	TypeQ5_K    Type = 13
	TypeQ6_K    Type = 14
	TypeQ8_K    Type = 15
	TypeIQ2_XXS Type = 16
	TypeIQ2_XS  Type = 17
	TypeIQ3_XXS Type = 18
	TypeIQ1_S   Type = 19
	TypeIQ4_NL  Type = 20
	TypeIQ3_S   Type = 21
	TypeIQ2_S   Type = 22
	TypeIQ4_XS  Type = 23
	TypeI8      Type = 24
	TypeI16     Type = 25
	TypeI32     Type = 26
	TypeI64     Type = 27
	TypeF64     Type = 28
	TypeIQ1_M   Type = 29
	TypeBF16    Type = 30
	TypeTQ1_0   Type = 34
	TypeTQ2_0   Type = 35
	TypeMXFP4   Type = 39
)

// typeTrait is one row of ggml's type_traits table (ggml.c): elements per
// block and bytes per block. A zero blockSize marks an unknown id.
type typeTrait struct {
	name      string
	blockSize uint64
	typeSize  uint64
}

// qkK is ggml's QK_K, the super-block size of the k-quants and i-quants.
const qkK = 256

// traits is indexed by Type; sizes are sizeof(block_*) from ggml-common.h.
var traits = [...]typeTrait{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", 32, 18},
	TypeQ4_1:    {"Q4_1", 32, 20},
	TypeQ5_0:    {"Q5_0", 32, 22},
	TypeQ5_1:    {"Q5_1", 32, 24},
	TypeQ8_0:    {"Q8_0", 32, 34},
	TypeQ8_1:    {"Q8_1", 32, 36},
	TypeQ2_K:    {"Q2_K", qkK, 84},
	TypeQ3_K:    {"Q3_K", qkK, 110},
	TypeQ4_K:    {"Q4_K", qkK, 144},
	TypeQ5_K:    {"Q5_K", qkK, 176},
	TypeQ6_K:    {"Q6_K", qkK, 210},
	TypeQ8_K:    {"Q8_K", qkK, 292},
	TypeIQ2_XXS: {"IQ2_XXS", qkK, 66},
	TypeIQ2_XS:  {"IQ2_XS", qkK, 74},
	TypeIQ3_XXS: {"IQ3_XXS", qkK, 98},
	TypeIQ1_S:   {"IQ1_S", qkK, 50},
	TypeIQ4_NL:  {"IQ4_NL", 32, 18},
	TypeIQ3_S:   {"IQ3_S", qkK, 110},
	TypeIQ2_S:   {"IQ2_S", qkK, 82},
	TypeIQ4_XS:  {"IQ4_XS", qkK, 136},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", qkK, 56},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", qkK, 54},
	TypeTQ2_0:   {"TQ2_0", qkK, 66},
	TypeMXFP4:   {"MXFP4", 32, 17},
}

func (t Type) trait() typeTrait {
	if uint64(t) < uint64(len(traits)) {
		return traits[t]
	}
	return typeTrait{}
}

// Known reports whether t is a tensor type that ggml defines.
func (t Type) Known() bool { return t.trait().blockSize != 0 }

// String returns llama.cpp's name of the type ("F32", "Q4_K", "IQ2_XXS"), or
// "type(N)" for an unknown id.
func (t Type) String() string {
	if tr := t.trait(); tr.blockSize != 0 {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize returns the number of elements per block (1 for plain types, 32
// or 256 for quantized ones), or 0 for an unknown type.
func (t Type) BlockSize() uint64 { return t.trait().blockSize }

// TypeSize returns the number of bytes per block, or 0 for an unknown type.
func (t Type) TypeSize() uint64 { return t.trait().typeSize }

// RowSize returns the bytes of one row of ne0 elements:
//
//	ne0 / BlockSize * TypeSize
//
// It fails with ErrUnknownType for an unknown type and with ErrCorrupt when
// ne0 is not a multiple of the block size.
func (t Type) RowSize(ne0 uint64) (uint64, error) {
	tr := t.trait()
	if tr.blockSize == 0 {
		return 0, fmt.Errorf("%w: tensor type %d", ErrUnknownType, uint32(t))
	}
	if ne0%tr.blockSize != 0 {
		return 0, fmt.Errorf("%w: row of %d elements is not a multiple of the %s block size %d", ErrCorrupt, ne0, tr.name, tr.blockSize)
	}
	hi, n := bits.Mul64(ne0/tr.blockSize, tr.typeSize)
	if hi != 0 {
		return 0, fmt.Errorf("%w: row of %d %s elements overflows", ErrCorrupt, ne0, tr.name)
	}
	return n, nil
}

// ParseType returns the type named name, ignoring case ("q4_k", "Q4_K",
// "bf16"). It fails with ErrUnknownType for any other name.
func ParseType(name string) (Type, error) {
	for i, tr := range traits {
		if tr.blockSize != 0 && strings.EqualFold(tr.name, name) {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("%w: tensor type %q", ErrUnknownType, name)
}
