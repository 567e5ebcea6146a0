package merge

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/simd"
)

// Codec converts tensor data between a GGUF tensor type and float32. The
// float types (F32, F16, BF16) are handled here in pure Go with simd
// kernels (FloatCodec); quantized types need ggml, which callers plug in
// (package merge does not import cgo).
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

// NormRule says how a fused block's normalisation weights are formed.
type NormRule int

const (
	// NormsWeighted fuses norms with the same weights as every other
	// tensor, so that λ = 0 or 1 reproduces dropping a block exactly.
	NormsWeighted NormRule = iota
	// NormsFirst keeps the norms of the first (lowest) block of a fusion,
	// as the published MKA code does.
	NormsFirst
)

// RewriteOptions configures Rewrite.
type RewriteOptions struct {
	Norms NormRule
	// Metadata is added to (or replaces keys in) the output, e.g. the
	// mka.* provenance keys.
	Metadata []gguf.KV
	// ChunkBytes bounds the float32 working set of one fused tensor chunk
	// (per source block); 0 means 16 MiB.
	ChunkBytes int
	// Progress, when set, is called with the bytes written so far.
	Progress func(done, total int64)
	// Align maps an output block to the alignment folded into its FFN
	// output: its ffn_down.weight W becomes Tᵀ W (and an ffn_down.bias b,
	// Tᵀ b), computed in float32 after the fusion and encoded back in the
	// tensor's own type. Other tensors are unchanged.
	Align map[int]*Alignment
	// AlignAttn maps an output block to an alignment folded the same way
	// into its attention output (attn_output.weight and .bias).
	AlignAttn map[int]*Alignment
	// Permute maps an input block to the reordering of its tensors
	// (MatchBlocks: FFN neurons, attention KV groups) applied before it
	// enters a fusion, so that it is averaged with the neurons and heads
	// it matches. Only blocks that are part of a fusion may have one.
	Permute map[int]BlockPerm
	// Product, when set, computes the folds' products Tᵀ W (for example
	// cgo.Product on ggml's CPU device; nil: gonum), so that a file can
	// match, bit for bit, a model folded in memory with the same product.
	Product MatMulTN
}

// AlignedSuffixes are the block tensors an Alignment is folded into.
var AlignedSuffixes = []string{"ffn_down.weight", "ffn_down.bias"}

// AttnAlignedSuffixes are those of an attention-output alignment
// (RewriteOptions.AlignAttn).
var AttnAlignedSuffixes = []string{"attn_output.weight", "attn_output.bias"}

// isNorm reports whether a block tensor is a normalisation weight.
func isNorm(suffix string) bool {
	return strings.Contains(suffix, "norm")
}

// OutputSize returns the data bytes Rewrite will write for plan (without
// the header), to check the free disk space first.
func OutputSize(f *gguf.File, b *Blocks, plan *Plan) int64 {
	var perBlock, total int64
	for _, t := range f.Tensors {
		total += int64(t.Size())
		if m := blockName.FindStringSubmatch(t.Name); m != nil && m[1] == "0" {
			perBlock += int64(t.Size())
		}
	}
	return total - int64(plan.Removed())*perBlock
}

// Rewrite writes the model f with its blocks replaced as plan's Layout
// says: a block made of one original block is copied byte for byte and
// renumbered; a fused block's tensors are Σ w_k θ_k over its original
// blocks, computed in float32 from decoded data and encoded back in the
// tensor's type (the type of its heaviest source block). Block-count
// metadata and per-layer arrays follow the new block order, everything else
// is kept byte-identical. Memory is bounded by RewriteOptions.ChunkBytes
// per source block, whatever the model size. The output appears at out only
// when complete (gguf.WriteFile). ctx cancels between chunks.
func Rewrite(ctx context.Context, f *gguf.File, b *Blocks, plan *Plan, out string, codec Codec, opt RewriteOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := plan.Validate(); err != nil {
		return err
	}
	if plan.Original != b.Count {
		return fmt.Errorf("%w: plan is for %d blocks, model has %d", ErrPlan, plan.Original, b.Count)
	}
	for blk := range opt.Permute {
		if !fused(plan, blk) {
			return fmt.Errorf("%w: block %d has a permutation but is not part of a fusion", ErrPlan, blk)
		}
	}
	if codec == nil {
		codec = FloatCodec{}
	}
	chunk := opt.ChunkBytes
	if chunk <= 0 {
		chunk = 16 << 20
	}
	index := map[string]int{}
	for i, t := range f.Tensors {
		index[t.Name] = i
	}
	src := func(block int, suffix string) int { return index[fmt.Sprintf("blk.%d.%s", block, suffix)] }

	// Output tensors: non-block tensors in place, the new blocks at the
	// position of the first block tensor.
	var outs []gguf.OutTensor
	var total int64
	emitted := false
	for i, t := range f.Tensors {
		if blockName.MatchString(t.Name) {
			if emitted {
				continue
			}
			emitted = true
			for j, parts := range plan.Layout {
				for _, suffix := range b.Suffixes {
					ot, err := fusedTensor(ctx, f, parts, suffix, src, j, codec, chunk, opt.Norms, alignFor(opt, j, suffix), opt.Permute, opt.Product)
					if err != nil {
						return err
					}
					outs = append(outs, ot)
					total += int64(ot.Info.Size())
				}
			}
			continue
		}
		outs = append(outs, f.OutTensor(i))
		total += int64(t.Size())
	}

	kvs, err := rewriteKVs(f, b, plan, opt.Metadata)
	if err != nil {
		return err
	}
	// Every source checks for cancellation before it writes, and reports
	// progress after.
	var done int64
	for i := range outs {
		inner := outs[i].Src
		outs[i].Src = gguf.WriterToFunc(func(w io.Writer) (int64, error) {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n, err := inner.WriteTo(w)
			done += n
			if opt.Progress != nil {
				opt.Progress(done, total)
			}
			return n, err
		})
	}
	if err := gguf.WriteFile(out, f.Version, kvs, f.Alignment, outs); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// alignFor returns the alignment of output block j that tensor suffix
// folds, if any.
func alignFor(opt RewriteOptions, j int, suffix string) *Alignment {
	if a := opt.Align[j]; a != nil && slices.Contains(AlignedSuffixes, suffix) {
		return a
	}
	if a := opt.AlignAttn[j]; a != nil && slices.Contains(AttnAlignedSuffixes, suffix) {
		return a
	}
	return nil
}

// fused reports whether input block blk is one of several parts of an
// output block of plan.
func fused(plan *Plan, blk int) bool {
	for _, parts := range plan.Layout {
		live := 0
		has := false
		for _, p := range parts {
			if p.W != 0 {
				live++
				has = has || p.Block == blk
			}
		}
		if has && live > 1 {
			return true
		}
	}
	return false
}

// fusedTensor returns output block j's tensor suffix: Σ w_k θ_k over its
// parts (each reordered first by its perms entry), then, when align is
// set, Tᵀ applied to its rows.
func fusedTensor(ctx context.Context, f *gguf.File, parts []Weighted, suffix string, src func(int, string) int,
	j int, codec Codec, chunk int, norms NormRule, align *Alignment, perms map[int]BlockPerm, mm MatMulTN) (gguf.OutTensor, error) {
	name := fmt.Sprintf("blk.%d.%s", j, suffix)
	live := make([]Weighted, 0, len(parts))
	for _, p := range parts {
		if p.W != 0 {
			live = append(live, p)
		}
	}
	if norms == NormsFirst && isNorm(suffix) && len(parts) > 1 {
		live = []Weighted{{Block: parts[0].Block, W: 1}}
	}
	heaviest := live[0]
	for _, p := range live {
		if p.W > heaviest.W {
			heaviest = p
		}
	}
	base := f.OutTensor(src(heaviest.Block, suffix))
	base.Info.Name = name
	perm := make([]TensorPerm, len(live))
	permuted := false
	for k, p := range live {
		if tp, ok := perms[p.Block][suffix]; ok && (tp.Rows != nil || tp.Cols != nil) {
			perm[k], permuted = tp, true
		}
	}
	if len(live) == 1 && live[0].W == 1 && align == nil && !permuted {
		return base, nil // a plain copy, renumbered
	}
	info := base.Info
	perRow := int(info.Dims[0])
	rows := int(info.Elements()) / perRow
	rowsPer := max(1, min(rows, chunk/(4*perRow)))
	for k, tp := range perm {
		if (tp.Rows != nil && len(tp.Rows) != rows) || (tp.Cols != nil && len(tp.Cols) != perRow) {
			return gguf.OutTensor{}, fmt.Errorf("%w: blk.%d.%s: permutation of %d rows, %d columns for %d rows of %d", ErrPlan, live[k].Block, suffix, len(tp.Rows), len(tp.Cols), rows, perRow)
		}
	}
	if align != nil {
		// Tᵀ W mixes all rows: the whole tensor in one chunk.
		rowsPer = rows
		if rows != align.D && !(rows == 1 && perRow == align.D) {
			return gguf.OutTensor{}, fmt.Errorf("%w: %s has %d rows of %d, the alignment is %d×%d", ErrAlign, name, rows, perRow, align.D, align.D)
		}
	}
	srcIdx := make([]int, len(live))
	for k, p := range live {
		srcIdx[k] = src(p.Block, suffix)
	}
	write := func(w io.Writer) (int64, error) {
		var written int64
		acc := make([]float32, rowsPer*perRow)
		tmp := make([]float32, rowsPer*perRow)
		var raw, enc []byte
		for r0 := 0; r0 < rows; r0 += rowsPer {
			if err := ctx.Err(); err != nil {
				return written, err
			}
			nr := min(rowsPer, rows-r0)
			n := nr * perRow
			a, t := acc[:n], tmp[:n]
			for k, p := range live {
				ti := f.Tensors[srcIdx[k]]
				rs := int64(mustRowSize(ti.Type, perRow))
				raw = grow(raw, int(rs)*nr)
				if rp := perm[k].Rows; rp != nil {
					// Output row r0+i is source row rp[r0+i].
					for i := range nr {
						if _, err := f.TensorReader(srcIdx[k]).ReadAt(raw[int64(i)*rs:int64(i+1)*rs], rs*int64(rp[r0+i])); err != nil {
							return written, fmt.Errorf("read %s: %w", ti.Name, err)
						}
					}
				} else if _, err := f.TensorReader(srcIdx[k]).ReadAt(raw, rs*int64(r0)); err != nil {
					return written, fmt.Errorf("read %s: %w", ti.Name, err)
				}
				dst := t
				if k == 0 {
					dst = a
				}
				if err := codec.Decode(ti.Type, raw, dst); err != nil {
					return written, fmt.Errorf("%s: %w", ti.Name, err)
				}
				if cp := perm[k].Cols; cp != nil {
					row := make([]float32, perRow)
					for i := range nr {
						r := dst[i*perRow : (i+1)*perRow]
						for c, from := range cp {
							row[c] = r[from]
						}
						copy(r, row)
					}
				}
				if k == 0 {
					if p.W != 1 {
						scale(a, float32(p.W))
					}
					continue
				}
				simd.Axpy(a, float32(p.W), t)
			}
			if align != nil {
				if err := foldTensor(align, a, rows, perRow, mm); err != nil {
					return written, fmt.Errorf("%s: %w", name, err)
				}
			}
			enc = grow(enc, mustRowSize(info.Type, perRow)*nr)
			if err := codec.Encode(info.Type, a, enc, nr, perRow); err != nil {
				return written, fmt.Errorf("%s: %w", name, err)
			}
			m, err := w.Write(enc)
			written += int64(m)
			if err != nil {
				return written, err
			}
		}
		return written, nil
	}
	return gguf.OutTensor{Info: info, Src: gguf.WriterToFunc(write)}, nil
}

// foldTensor applies Tᵀ in place to a tensor of rows×perRow values: rows
// = d for a weight (W ← Tᵀ W, its products by mm), or one row of d values
// for a bias (b ← Tᵀ b, in Go), as the in-memory editor folds them.
func foldTensor(a *Alignment, v []float32, rows, perRow int, mm MatMulTN) error {
	if rows == 1 {
		return a.FoldRowsInPlaceWith(v, 1, nil) // d rows of one value: the same product
	}
	return a.FoldRowsInPlaceWith(v, perRow, mm)
}

// mustRowSize is t.RowSize for shapes gguf.Open has already validated.
func mustRowSize(t gguf.Type, n int) int {
	rs, err := t.RowSize(uint64(n))
	if err != nil {
		panic("merge: " + err.Error())
	}
	return int(rs)
}

// elemEqual reports whether elements i and j of an array are equal.
func elemEqual(a gguf.Array, i, j int) bool {
	v := reflect.ValueOf(a.Values)
	return reflect.DeepEqual(v.Index(i).Interface(), v.Index(j).Interface())
}

// selectElems returns the array of a's elements at idx, in that order.
func selectElems(a gguf.Array, idx []int) gguf.Array {
	v := reflect.ValueOf(a.Values)
	out := reflect.MakeSlice(v.Type(), len(idx), len(idx))
	for k, i := range idx {
		out.Index(k).Set(v.Index(i))
	}
	return gguf.Array{Elem: a.Elem, Values: out.Interface()}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// scale multiplies v by s in place.
func scale(v []float32, s float32) {
	for i := range v {
		v[i] *= s
	}
}

// rewriteKVs returns the output metadata: block_count updated, per-layer
// arrays rearranged, extra keys added.
func rewriteKVs(f *gguf.File, b *Blocks, plan *Plan, extra []gguf.KV) ([]gguf.KV, error) {
	perLayer := map[string]bool{}
	for _, k := range b.PerLayerKeys {
		perLayer[k] = true
	}
	out := make([]gguf.KV, 0, len(f.KVs)+len(extra))
	for _, kv := range f.KVs {
		switch {
		case kv.Key == b.Arch+".block_count":
			v, err := sameIntType(kv.Value, uint64(len(plan.Layout)))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", kv.Key, err)
			}
			kv.Value = v
		case perLayer[kv.Key]:
			a := kv.Value.V.(gguf.Array)
			idx := make([]int, len(plan.Layout))
			for j, parts := range plan.Layout {
				idx[j] = parts[0].Block
				for _, p := range parts[1:] {
					if !elemEqual(a, p.Block, parts[0].Block) {
						return nil, fmt.Errorf("%w: %s differs between blocks %d and %d, which the plan fuses", ErrUnsupported, kv.Key, parts[0].Block, p.Block)
					}
				}
			}
			kv.Value = gguf.Value{Type: gguf.ValueArray, V: selectElems(a, idx)}
		}
		out = append(out, kv)
	}
	for _, kv := range extra {
		replaced := false
		for i := range out {
			if out[i].Key == kv.Key {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out, nil
}

// sameIntType returns v as a Value of the same integer type as like.
func sameIntType(like gguf.Value, v uint64) (gguf.Value, error) {
	switch like.Type {
	case gguf.ValueUint32:
		return gguf.Uint32(uint32(v)), nil
	case gguf.ValueInt32:
		return gguf.Int32(int32(v)), nil
	case gguf.ValueUint64:
		return gguf.Uint64(v), nil
	case gguf.ValueUint16:
		return gguf.Uint16(uint16(v)), nil
	}
	return gguf.Value{}, fmt.Errorf("unexpected type %s", like.Type)
}
