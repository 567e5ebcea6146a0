package shrink

// A model file's decoder blocks and its streaming rewrite. Every call to
// merge.InspectBlocks and merge.Rewrite in the command is in this file
// (they move to merge/arch and merge/edit), and the other files name their
// types by the aliases below.

import (
	"context"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

type (
	// Blocks is the decoder blocks of a model file and their tensors.
	Blocks = merge.Blocks
	// RewriteOptions are the options of Rewrite.
	RewriteOptions = merge.RewriteOptions
	// NormRule is how a fused block's norm weights are made.
	NormRule = merge.NormRule
)

// Inspect finds the decoder blocks of f, or says why its architecture
// cannot be merged.
func Inspect(f *gguf.File) (*Blocks, error) { return merge.InspectBlocks(f) }

// Open opens a model file and finds its decoder blocks.
func Open(path string) (*gguf.File, *Blocks, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := Inspect(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, b, nil
}

// CheckModel reads path with the GGUF reader, so that a bad file gets one
// clear line naming it before llama.cpp sees it; with blocks it also
// refuses architectures whose decoder blocks cannot be merged.
func CheckModel(path string, blocks bool) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if blocks {
		_, err = Inspect(f)
	}
	return err
}

// Rewrite streams f without the blocks p removes, fused and aligned as p
// and opt say, into out, with the codec of the in-memory edits
// (pipeline.Codec), so that the file is the model the search scored.
func Rewrite(ctx context.Context, f *gguf.File, b *Blocks, p *merge.Plan, out string, opt RewriteOptions) error {
	return merge.Rewrite(ctx, f, b, p, out, Codec(), opt)
}

// OutputSize is the size of the file Rewrite writes for p.
func OutputSize(f *gguf.File, b *Blocks, p *merge.Plan) int64 { return merge.OutputSize(f, b, p) }

// Codec is the codec of rewrites and in-memory edits.
func Codec() merge.Codec { return pipeline.Codec{} }

// rule returns the rewrite's norm rule.
func (n Norms) rule() NormRule {
	if n == NormsFirst {
		return merge.NormsFirst
	}
	return merge.NormsWeighted
}
