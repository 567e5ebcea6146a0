package cgo

/*
#include <stdlib.h>
#include "quantize.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sort"
	"unsafe"
)

// QuantizeParams configures QuantizeFile, mirroring
// llama_model_quantize_params.
type QuantizeParams struct {
	// FileType is llama.cpp's LLAMA_FTYPE value (e.g. 7 = MOSTLY_Q8_0,
	// 15 = MOSTLY_Q4_K_M).
	FileType int
	// Threads for quantization (0: all hardware threads).
	Threads int
	// AllowRequantize lets already-quantized tensors be requantized.
	AllowRequantize bool
	// LeaveOutput keeps output.weight unquantized.
	LeaveOutput bool
	// Pure quantizes every tensor to the file type's default type, without
	// llama.cpp's per-tensor mixture rules.
	Pure bool
	// OutputType and EmbeddingType force ggml types for output.weight and
	// token_embd.weight; -1 keeps llama.cpp's choice.
	OutputType, EmbeddingType int
	// Imatrix maps tensor names to per-column importance weights.
	Imatrix map[string][]float32
}

// QuantizeFile quantizes the GGUF model at in into out with llama.cpp's own
// quantizer (llama_model_quantize). The pages of in that the quantizer maps
// are dropped as it goes (dropMappedPages), so that they do not add up to
// the whole model in this process's resident memory.
func QuantizeFile(in, out string, qp QuantizeParams) error {
	Init()
	if _, err := os.Stat(in); err != nil {
		return fmt.Errorf("quantize: %w", err)
	}
	p := C.llama_model_quantize_default_params()
	p.ftype = C.enum_llama_ftype(qp.FileType)
	p.nthread = C.int32_t(qp.Threads)
	p.allow_requantize = C.bool(qp.AllowRequantize)
	p.quantize_output_tensor = C.bool(!qp.LeaveOutput)
	p.pure = C.bool(qp.Pure)
	if qp.OutputType >= 0 {
		p.output_tensor_type = C.enum_ggml_type(qp.OutputType)
	}
	if qp.EmbeddingType >= 0 {
		p.token_embedding_type = C.enum_ggml_type(qp.EmbeddingType)
	}
	cin, cout := C.CString(in), C.CString(out)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))

	names := make([]string, 0, len(qp.Imatrix))
	for k, v := range qp.Imatrix {
		if len(v) > 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	n := len(names)
	var cnames **C.char
	var cvals **C.float
	var clens *C.int
	if n > 0 {
		// C arrays of pointers to C copies: Go memory must not hold pointers
		// to Go memory when passed to C.
		cnames = (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(uintptr(0)))))
		cvals = (**C.float)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(uintptr(0)))))
		clens = (*C.int)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.int(0)))))
		ns := unsafe.Slice(cnames, n)
		vs := unsafe.Slice(cvals, n)
		ls := unsafe.Slice(clens, n)
		for i, name := range names {
			v := qp.Imatrix[name]
			ns[i] = C.CString(name)
			vs[i] = (*C.float)(C.malloc(C.size_t(len(v) * 4)))
			copy(unsafe.Slice((*float32)(unsafe.Pointer(vs[i])), len(v)), v)
			ls[i] = C.int(len(v))
		}
		defer func() {
			for i := range n {
				C.free(unsafe.Pointer(ns[i]))
				C.free(unsafe.Pointer(vs[i]))
			}
			C.free(unsafe.Pointer(cnames))
			C.free(unsafe.Pointer(cvals))
			C.free(unsafe.Pointer(clens))
		}()
	}
	clearErrors()
	defer dropMappedPages(in)()
	var exc C.mka_exc
	if r := C.mka_quantize_file(cin, cout, &p, C.int(n), cnames, cvals, clens, &exc); r != 0 {
		os.Remove(out)
		if err := caught("llama_model_quantize", &exc); err != nil {
			return fmt.Errorf("quantize %s: llama.cpp's quantizer failed (%w)", in, err)
		}
		return fmt.Errorf("quantize %s: llama.cpp's quantizer failed (%s)", in, llamaReason())
	}
	return nil
}
