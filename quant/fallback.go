package quant

import (
	"fmt"
	"io"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
)

// needsFallback reports whether llama.cpp's quantizer would refuse f for
// ft: a weight matrix whose rows do not divide into ft's blocks, for a type
// that llama.cpp gives no fallback (the legacy types Q4_0 … Q8_0 and
// IQ4_NL; k-quants and the other IQ types fall back inside llama.cpp).
func needsFallback(f *gguf.File, ft FileType) bool {
	switch ft.Base {
	case gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ8_0, gguf.TypeIQ4_NL:
	default:
		return false
	}
	for _, t := range f.Tensors {
		if quantizable(t) && t.Dims[0]%uint64(ft.Base.BlockSize()) != 0 {
			return true
		}
	}
	return false
}

// quantizable reports whether a tensor is a weight matrix that llama.cpp
// quantizes (2-D or more, named *.weight, not a norm).
func quantizable(t gguf.TensorInfo) bool {
	return len(t.Dims) >= 2 && strings.HasSuffix(t.Name, ".weight") && !strings.Contains(t.Name, "norm")
}

// fileWithFallback quantizes every weight matrix to ft.Base with ggml's
// quantizer, and to F16 where its rows do not divide into ft.Base's blocks
// (as llama.cpp itself does for k-quants); other tensors are copied. An
// importance matrix entry of the right width is used where the type uses
// one. It streams one tensor at a time.
func fileWithFallback(in, out string, ft FileType, imatrix map[string][]float32) error {
	f, err := gguf.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	e := f.Edit()
	for i, t := range f.Tensors {
		if !quantizable(t) || (t.Type != gguf.TypeF32 && t.Type != gguf.TypeF16 && t.Type != gguf.TypeBF16) {
			continue
		}
		target := ft.Base
		if t.Dims[0]%uint64(target.BlockSize()) != 0 {
			target = gguf.TypeF16
		}
		if target == t.Type {
			continue
		}
		info := t
		info.Type = target
		src, idx := t, i
		if err := e.ReplaceTensor(t.Name, info, gguf.WriterToFunc(func(w io.Writer) (int64, error) {
			return convertTensor(f, idx, src, target, imatrix[src.Name], w)
		})); err != nil {
			return err
		}
	}
	e.SetKV(gguf.KV{Key: "general.file_type", Value: gguf.Uint32(uint32(ft.ID))})
	return e.WriteFile(out)
}

// convertTensor decodes tensor i of f to float32 row by row and writes it
// as target.
func convertTensor(f *gguf.File, i int, t gguf.TensorInfo, target gguf.Type, imatrix []float32, w io.Writer) (int64, error) {
	perRow := int(t.Dims[0])
	if len(imatrix) != perRow {
		imatrix = nil
	}
	rows := int(t.Elements()) / perRow
	inRow, _ := t.Type.RowSize(uint64(perRow))
	outRow, _ := target.RowSize(uint64(perRow))
	const chunkRows = 256
	raw := make([]byte, int(inRow)*chunkRows)
	vals := make([]float32, perRow*chunkRows)
	enc := make([]byte, int(outRow)*chunkRows)
	r := f.TensorReader(i)
	var written int64
	for r0 := 0; r0 < rows; r0 += chunkRows {
		n := min(chunkRows, rows-r0)
		b := raw[:int(inRow)*n]
		if _, err := io.ReadFull(r, b); err != nil {
			return written, fmt.Errorf("read %s: %w", t.Name, err)
		}
		v := vals[:perRow*n]
		if err := cgo.Dequantize(int(t.Type), b, v); err != nil {
			return written, err
		}
		out := enc[:int(outRow)*n]
		if target == gguf.TypeF16 {
			if _, err := gguf.EncodeFloats(target, out, v); err != nil {
				return written, err
			}
		} else if _, err := cgo.Quantize(int(target), v, out, n, perRow, imatrix); err != nil {
			return written, err
		}
		m, err := w.Write(out)
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}
