package cgo

/*
#include <stdlib.h>
#include "ggml.h"

static int mka_has_to_float(enum ggml_type t) {
	const struct ggml_type_traits *tr = ggml_get_type_traits(t);
	return t == GGML_TYPE_F32 || (tr->to_float != NULL);
}

static void mka_to_float(enum ggml_type t, const void *src, float *dst, int64_t n) {
	ggml_get_type_traits(t)->to_float(src, dst, n);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// typeCount is GGML_TYPE_COUNT, the first invalid type id.
const typeCount = int(C.GGML_TYPE_COUNT)

func validType(t int) error {
	if t < 0 || t >= typeCount || C.ggml_blck_size(C.enum_ggml_type(t)) == 0 {
		return fmt.Errorf("ggml type %d is not supported", t)
	}
	return nil
}

// TypeName returns ggml's name of a tensor type ("q4_K", "f16", ...).
func TypeName(t int) string {
	if validType(t) != nil {
		return fmt.Sprintf("type%d", t)
	}
	return C.GoString(C.ggml_type_name(C.enum_ggml_type(t)))
}

// BlockSize returns the number of elements in one block of type t.
func BlockSize(t int) int { return int(C.ggml_blck_size(C.enum_ggml_type(t))) }

// TypeSize returns the bytes of one block of type t.
func TypeSize(t int) int { return int(C.ggml_type_size(C.enum_ggml_type(t))) }

// RowSize returns the bytes of a row of n elements of type t.
func RowSize(t, n int) int { return int(C.ggml_row_size(C.enum_ggml_type(t), C.int64_t(n))) }

// RequiresImatrix reports whether quantizing to t needs an importance matrix.
func RequiresImatrix(t int) bool {
	return bool(C.ggml_quantize_requires_imatrix(C.enum_ggml_type(t)))
}

// Dequantize converts len(dst) elements of type t from src to float32 with
// ggml's type traits. src must hold exactly RowSize(t, len(dst)) bytes.
func Dequantize(t int, src []byte, dst []float32) error {
	if err := validType(t); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	if len(dst)%BlockSize(t) != 0 || len(src) != RowSize(t, len(dst)) {
		return fmt.Errorf("dequantize %s: %d bytes for %d elements", TypeName(t), len(src), len(dst))
	}
	if C.mka_has_to_float(C.enum_ggml_type(t)) == 0 {
		return fmt.Errorf("dequantize: ggml has no conversion from %s", TypeName(t))
	}
	if t == int(C.GGML_TYPE_F32) {
		copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(src))), len(dst)))
		return nil
	}
	C.mka_to_float(C.enum_ggml_type(t), unsafe.Pointer(unsafe.SliceData(src)), (*C.float)(unsafe.SliceData(dst)), C.int64_t(len(dst)))
	return nil
}

// Quantize converts rows×perRow float32 values from src into dst in type t
// with ggml_quantize_chunk (ggml's reference quantizer, the one llama.cpp's
// file quantizer uses). imatrix, if non-nil, holds perRow importance
// weights. dst must hold rows·RowSize(t, perRow) bytes; the bytes written
// are returned.
func Quantize(t int, src []float32, dst []byte, rows, perRow int, imatrix []float32) (int, error) {
	if err := validType(t); err != nil {
		return 0, err
	}
	if rows*perRow != len(src) || perRow%BlockSize(t) != 0 {
		return 0, fmt.Errorf("quantize %s: %d values are not %d rows of %d", TypeName(t), len(src), rows, perRow)
	}
	if need := rows * RowSize(t, perRow); len(dst) < need {
		return 0, fmt.Errorf("quantize %s: destination has %d bytes, needs %d", TypeName(t), len(dst), need)
	}
	if imatrix != nil && len(imatrix) != perRow {
		return 0, fmt.Errorf("quantize %s: importance matrix has %d values, rows have %d", TypeName(t), len(imatrix), perRow)
	}
	if imatrix == nil && RequiresImatrix(t) {
		return 0, fmt.Errorf("quantize %s: this type needs an importance matrix", TypeName(t))
	}
	if len(src) == 0 {
		return 0, nil
	}
	var im *C.float
	if imatrix != nil {
		im = (*C.float)(unsafe.SliceData(imatrix))
	}
	n := C.ggml_quantize_chunk(C.enum_ggml_type(t), (*C.float)(unsafe.SliceData(src)), unsafe.Pointer(unsafe.SliceData(dst)),
		0, C.int64_t(rows), C.int64_t(perRow), im)
	return int(n), nil
}
