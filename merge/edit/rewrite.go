package edit

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

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
	// Align maps an output block to the alignment folded into the tensors
	// its architecture row folds (arch.Row.Fold: ffn_down's weight and
	// bias, or for a post-norm row post_ffw_norm's weight, which takes a
	// diagonal alignment only), after the fusion (Tensor).
	Align map[int]*merge.Alignment
	// Product, when set, computes the folds' products Tᵀ W (for example
	// cgo.Product on ggml's CPU device; nil: gonum), so that a file can
	// match, bit for bit, a model folded in memory with the same product.
	Product merge.MatMulTN
	// Replace maps an output tensor name ("blk.3.ffn_down.weight") to the
	// float32 values it holds instead of its parts and fold (Replacement).
	Replace map[string][]float32
}

// isNorm reports whether a block tensor is a normalisation weight.
func isNorm(suffix string) bool {
	return strings.Contains(suffix, "norm")
}

// OutputSize returns the data bytes Rewrite will write for plan (without
// the header), to check the free disk space first.
func OutputSize(f *gguf.File, m *arch.Model, plan *merge.Plan) int64 {
	var perBlock, total int64
	for _, t := range f.Tensors {
		total += int64(t.Size())
		if b, _, ok := arch.BlockTensor(t.Name); ok && b == 0 {
			perBlock += int64(t.Size())
		}
	}
	return total - int64(plan.Removed())*perBlock
}

// Rewrite writes the model f with its blocks replaced as plan's Layout
// says: output block j's tensor is the Tensor Σ w_k θ_k over its original
// blocks (a block made of one original block is copied byte for byte and
// renumbered; a fused block is computed in float32 and encoded in the type
// of its heaviest source block), with opt.Align[j] folded in. Block-count
// metadata and per-layer arrays follow the new block order, everything else
// is kept byte-identical. Memory is bounded by RewriteOptions.ChunkBytes
// per source block, whatever the model size. The output appears at out only
// when complete (gguf.WriteFile). ctx cancels between chunks.
func Rewrite(ctx context.Context, f *gguf.File, m *arch.Model, plan *merge.Plan, out string, codec Codec, opt RewriteOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := plan.Validate(); err != nil {
		return err
	}
	if plan.Original != m.Count {
		return fmt.Errorf("%w: plan is for %d blocks, model has %d", merge.ErrPlan, plan.Original, m.Count)
	}
	if err := m.CheckPlan(plan); err != nil {
		return err
	}
	for _, a := range opt.Align {
		if err := m.Arch.CheckAlignment(a); err != nil {
			return err
		}
	}
	if codec == nil {
		codec = FloatCodec{}
	}
	index := map[string]int{}
	for i, t := range f.Tensors {
		index[t.Name] = i
	}
	// Output tensors: non-block tensors in place, the new blocks at the
	// position of the first block tensor.
	var outs []gguf.OutTensor
	var total int64
	emitted := false
	replaced := 0
	for i, t := range f.Tensors {
		if _, _, ok := arch.BlockTensor(t.Name); !ok {
			outs = append(outs, f.OutTensor(i))
			total += int64(t.Size())
			continue
		}
		if emitted {
			continue
		}
		emitted = true
		for j, parts := range plan.Layout {
			for _, suffix := range m.Suffixes {
				bt := blockTensor(f, index, parts, suffix, j, opt)
				if m.Arch.Folds(suffix) {
					bt.Fold = opt.Align[j]
				}
				if v, ok := opt.Replace[bt.Info.Name]; ok {
					replaced++
					var err error
					if bt, err = Replacement(bt.Info, v); err != nil {
						return err
					}
				}
				if err := bt.Check(); err != nil {
					return err
				}
				outs = append(outs, gguf.OutTensor{Info: bt.Info, Src: gguf.WriterToFunc(func(w io.Writer) (int64, error) {
					return bt.Write(ctx, w, codec, opt.ChunkBytes)
				})})
				total += int64(bt.Info.Size())
			}
		}
	}
	if replaced != len(opt.Replace) {
		return fmt.Errorf("rewrite: %d of the %d replaced tensors are not in the output", len(opt.Replace)-replaced, len(opt.Replace))
	}

	kvs, err := rewriteKVs(f, m, plan, opt.Metadata)
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

// blockTensor returns output block j's tensor suffix from the file: the
// parts of nonzero weight (under NormsFirst, a fused block's norms are its
// first part's), in the type and shape of the heaviest.
func blockTensor(f *gguf.File, index map[string]int, parts []merge.Weighted, suffix string, j int, opt RewriteOptions) *Tensor {
	live := make([]merge.Weighted, 0, len(parts))
	for _, p := range parts {
		if p.W != 0 {
			live = append(live, p)
		}
	}
	if opt.Norms == NormsFirst && isNorm(suffix) && len(parts) > 1 {
		live = []merge.Weighted{{Block: parts[0].Block, W: 1}}
	}
	t := &Tensor{Product: opt.Product}
	for _, p := range live {
		i := index[fmt.Sprintf("blk.%d.%s", p.Block, suffix)]
		t.Parts = append(t.Parts, Part{Name: f.Tensors[i].Name, Type: f.Tensors[i].Type, Data: f.TensorReader(i), W: p.W})
	}
	t.Info = f.OutTensor(index[fmt.Sprintf("blk.%d.%s", merge.Heaviest(live).Block, suffix)]).Info
	t.Info.Name = fmt.Sprintf("blk.%d.%s", j, suffix)
	return t
}
