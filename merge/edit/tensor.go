package edit

import (
	"context"
	"fmt"
	"io"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/simd"
)

// Part is one input θ_k of an output tensor: the bytes of a tensor of the
// output's shape, of type Type, and its weight w_k. Name names it in
// errors.
type Part struct {
	Name string
	Type gguf.Type
	Data io.ReaderAt
	W    float64
}

// Tensor is one output tensor of a block edit:
//
//	out = fold_T( Σ_k w_k θ_k )
//
// computed in float32 from the decoded parts and encoded in Info.Type. Fold,
// when set, applies Tᵀ to the rows: a weight W of n_embd rows becomes Tᵀ W
// (its products by Product; nil: gonum), a bias b of n_embd values Tᵀ b
// (in Go). With no parts the tensor is zero: a block made an identity in
// memory. One part of weight 1 and of the output's type, without a fold, is
// a copy of its bytes.
//
// Both the in-memory editor (parts: the loaded model's current bytes) and
// the streaming rewrite (parts: file sections) compute their tensors here,
// so that a file is, bit for bit, the model the search scored.
type Tensor struct {
	Info    gguf.TensorInfo
	Parts   []Part
	Fold    *merge.Alignment
	Product merge.MatMulTN
}

// Copies reports whether the output is its one part's bytes.
func (t *Tensor) Copies() bool {
	return len(t.Parts) == 1 && t.Parts[0].W == 1 && t.Fold == nil && t.Parts[0].Type == t.Info.Type
}

// shape returns the tensor's rows of perRow values and checks that a fold
// fits them.
func (t *Tensor) shape() (rows, perRow int, err error) {
	perRow = int(t.Info.Dims[0])
	rows = int(t.Info.Elements()) / perRow
	if a := t.Fold; a != nil && rows != a.D && !(rows == 1 && perRow == a.D) {
		return 0, 0, fmt.Errorf("%w: %s has %d rows of %d, the alignment is %d×%d", merge.ErrAlign, t.Info.Name, rows, perRow, a.D, a.D)
	}
	return rows, perRow, nil
}

// Check returns the error Write would return for the tensor's shape.
func (t *Tensor) Check() error {
	_, _, err := t.shape()
	return err
}

// Write writes the output's bytes to w, computing chunkBytes of float32
// rows per part at a time (0: 16 MiB; a fold needs the whole tensor). ctx
// cancels between chunks.
func (t *Tensor) Write(ctx context.Context, w io.Writer, codec Codec, chunkBytes int) (int64, error) {
	if err := t.Check(); err != nil {
		return 0, err
	}
	if t.Copies() {
		return io.Copy(w, io.NewSectionReader(t.Parts[0].Data, 0, int64(t.Info.Size())))
	}
	var written int64
	var enc []byte
	err := t.chunks(ctx, codec, chunkBytes, func(_, nr, perRow int, a []float32) error {
		enc = grow(enc, mustRowSize(t.Info.Type, perRow)*nr)
		if err := codec.Encode(t.Info.Type, a, enc, nr, perRow); err != nil {
			return fmt.Errorf("%s: %w", t.Info.Name, err)
		}
		m, err := w.Write(enc)
		written += int64(m)
		return err
	})
	return written, err
}

// Bytes returns the output's bytes in one slice (the in-memory editor),
// each chunk encoded in place.
func (t *Tensor) Bytes(ctx context.Context, codec Codec) ([]byte, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	out := make([]byte, t.Info.Size())
	if t.Copies() {
		_, err := t.Parts[0].Data.ReadAt(out, 0)
		return out, err
	}
	err := t.chunks(ctx, codec, 0, func(r0, nr, perRow int, a []float32) error {
		rs := mustRowSize(t.Info.Type, perRow)
		if err := codec.Encode(t.Info.Type, a, out[r0*rs:(r0+nr)*rs], nr, perRow); err != nil {
			return fmt.Errorf("%s: %w", t.Info.Name, err)
		}
		return nil
	})
	return out, err
}

// chunks computes the output's float32 rows chunk by chunk, chunkBytes of
// rows per part at a time (0: 16 MiB; a fold needs the whole tensor), and
// passes each chunk, rows [r0, r0+nr) of perRow values, to emit.
func (t *Tensor) chunks(ctx context.Context, codec Codec, chunkBytes int, emit func(r0, nr, perRow int, a []float32) error) error {
	rows, perRow, err := t.shape()
	if err != nil {
		return err
	}
	if chunkBytes <= 0 {
		chunkBytes = 16 << 20
	}
	rowsPer := max(1, min(rows, chunkBytes/(4*perRow)))
	if t.Fold != nil {
		rowsPer = rows // Tᵀ W mixes all rows
	}
	acc := make([]float32, rowsPer*perRow)
	var tmp []float32 // the second and later parts, decoded
	if len(t.Parts) > 1 {
		tmp = make([]float32, rowsPer*perRow)
	}
	var raw []byte
	for r0 := 0; r0 < rows; r0 += rowsPer {
		if err := ctx.Err(); err != nil {
			return err
		}
		nr := min(rowsPer, rows-r0)
		a := acc[:nr*perRow]
		if err := t.sum(a, tmp, &raw, r0, nr, perRow, codec); err != nil {
			return err
		}
		if t.Fold != nil {
			if err := t.fold(a, rows, perRow); err != nil {
				return fmt.Errorf("%s: %w", t.Info.Name, err)
			}
		}
		if err := emit(r0, nr, perRow, a); err != nil {
			return err
		}
	}
	return nil
}

// sum sets a to Σ_k w_k θ_k over rows [r0, r0+nr): the first part decoded
// into a and scaled, the others decoded into tmp and added (simd.Axpy).
func (t *Tensor) sum(a, tmp []float32, raw *[]byte, r0, nr, perRow int, codec Codec) error {
	if len(t.Parts) == 0 {
		clear(a)
		return nil
	}
	for k, p := range t.Parts {
		rs := int64(mustRowSize(p.Type, perRow))
		*raw = grow(*raw, int(rs)*nr)
		if _, err := p.Data.ReadAt(*raw, rs*int64(r0)); err != nil {
			return fmt.Errorf("read %s: %w", p.Name, err)
		}
		dst := a
		if k > 0 {
			dst = tmp[:len(a)]
		}
		if err := codec.Decode(p.Type, *raw, dst); err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		switch {
		case k > 0:
			simd.Axpy(a, float32(p.W), dst)
		case p.W != 1:
			for i := range a {
				a[i] *= float32(p.W)
			}
		}
	}
	return nil
}

// fold applies Tᵀ in place to v, rows×perRow values: rows = d for a weight
// (W ← Tᵀ W, its products by Product), or one row of d values for a bias
// (b ← Tᵀ b, in Go).
func (t *Tensor) fold(v []float32, rows, perRow int) error {
	if rows == 1 {
		return t.Fold.Fold(v, 1, nil) // d rows of one value: the same product
	}
	return t.Fold.Fold(v, perRow, t.Product)
}

// mustRowSize is t.RowSize for shapes gguf.Open has already validated.
func mustRowSize(t gguf.Type, n int) int {
	rs, err := t.RowSize(uint64(n))
	if err != nil {
		panic("edit: " + err.Error())
	}
	return int(rs)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
