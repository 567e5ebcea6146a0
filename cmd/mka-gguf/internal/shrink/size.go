package shrink

import (
	"fmt"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/quant"
)

// Predicted sizes of OUT, from IN's metadata before any work: the size
// check refuses a folder without room for them and --target-size chooses
// the number of blocks by them.

// metaSlack bounds the metadata a merge adds to IN's (the mka.* keys, the
// new general.name, quantize.imatrix.*), in bytes.
const metaSlack = 16 << 10

// predictSize returns the bytes of OUT with removed of IN's blocks
// removed: as the rewrite writes it (IN's tensor types) when ft is nil,
// else as llama.cpp's quantizer makes it of type *ft (quantType; the
// legacy types' fallback of quant.File when a row does not divide). The
// header is IN's with metaSlack more and every tensor's alignment padding.
func predictSize(f *gguf.File, b *Blocks, removed int, ft *quant.FileType, hasImatrix bool) int64 {
	L := b.Count - removed
	align := int64(32)
	if v, ok := f.Uint("general.alignment"); ok && v > 0 {
		align = int64(v)
	}
	q := qstate{gqa: 1, hasImatrix: hasImatrix}
	if ft != nil {
		q.ft = *ft
		arch := f.Arch()
		h, _ := f.Uint(arch + ".attention.head_count")
		kv, _ := f.Uint(arch + ".attention.head_count_kv")
		if kv > 0 {
			q.gqa = int(h / kv)
		}
		_, q.hasOutput = f.Tensor("output.weight")
	}
	// Every output block has block 0's tensors (arch.Inspect checks the
	// shapes are the same in every block).
	var ts []qtensor
	for _, t := range f.Tensors {
		blk, suffix, ok := arch.BlockTensor(t.Name)
		switch {
		case !ok:
			ts = append(ts, qtensor{name: t.Name, dims: t.Dims, typ: t.Type})
		case blk == 0:
			for i := range L {
				ts = append(ts, qtensor{name: fmt.Sprintf("blk.%d.%s", i, suffix), dims: t.Dims, typ: t.Type, layer: i, layers: L})
			}
		}
	}
	simple := false // quant.File's fallback: every matrix in the base type or F16
	if ft != nil && legacy(ft.Base) {
		for _, t := range ts {
			simple = simple || (t.quantizable() && !divides(t.dims[0], ft.Base))
		}
	}
	total := f.DataOffset + metaSlack
	for _, t := range ts {
		typ := t.typ
		switch {
		case ft == nil:
		case simple && t.quantizable():
			typ = fallback(ft.Base, t.dims[0])
		default:
			typ = q.quantType(t)
		}
		total += tensorBytes(t.dims, typ) + align
	}
	return total
}

// tensorBytes is the size of a tensor of dims in type t.
func tensorBytes(dims []uint64, t gguf.Type) int64 {
	row, err := t.RowSize(dims[0])
	if err != nil {
		return 0
	}
	n := int64(row)
	for _, d := range dims[1:] {
		n *= int64(d)
	}
	return n
}

// quantType returns the file type of Quant (nil without it).
func (o *Options) quantType() *quant.FileType {
	if o.Quant == "" {
		return nil
	}
	ft, err := quant.Parse(o.Quant)
	if err != nil {
		return nil // Validate refuses it
	}
	return &ft
}

// usesImatrix reports whether Quant is made with an importance matrix.
func (o *Options) usesImatrix() bool {
	return o.Quant != "" && (o.Imatrix != "" || o.ImatrixFrom != ImatrixNone)
}

// predict returns OUT's predicted bytes with removed blocks removed.
func (o *Options) predict(f *gguf.File, b *Blocks, removed int) int64 {
	return predictSize(f, b, removed, o.quantType(), o.usesImatrix())
}

// checkSpace refuses an OUT folder without room for what the merge keeps
// there at once: OUT as merged and, with Quant, the quantized OUT beside
// it (the merged one is its temporary input).
func (o *Options) checkSpace(f *gguf.File, b *Blocks, removed int) error {
	if o.Out == "" || o.DryRun {
		return nil
	}
	need := predictSize(f, b, removed, nil, false)
	if o.Quant != "" {
		need += o.predict(f, b, removed)
	}
	return files.CheckSpace(o.Out, need)
}

// targetCount returns the fewest blocks of IN to remove so that OUT fits
// TargetSize, or says why no count does.
func (o *Options) targetCount(f *gguf.File, b *Blocks) (int, error) {
	for n := 1; n < b.Count; n++ {
		if b.CheckRemoval(n) != nil { // not whole runs of an index pattern
			continue
		}
		if o.predict(f, b, n) <= o.TargetSize {
			return n, nil
		}
	}
	least := o.predict(f, b, b.Count-1)
	how := "give a larger size"
	if o.Quant == "" {
		how += " or --quant a type"
	} else {
		how += " or a smaller --quant type"
	}
	return 0, fmt.Errorf("--target-size %s cannot be reached for %s: with %d of its %d blocks removed OUT would still take %s; %s",
		files.Human(uint64(o.TargetSize)), o.In, b.Count-1, b.Count, files.Human(uint64(least)), how)
}

// QuantizedSize predicts the bytes of f quantized to ft by llama.cpp's
// quantizer, nothing removed (the quantize command's space check).
func QuantizedSize(f *gguf.File, ft quant.FileType, hasImatrix bool) int64 {
	n, _ := f.Uint(f.Arch() + ".block_count")
	return predictSize(f, &Blocks{Count: int(n)}, 0, &ft, hasImatrix)
}
