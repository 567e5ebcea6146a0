package shrink

// A model file's decoder blocks (merge/arch) and its streaming rewrite
// (merge/edit): the command's only calls to them, and the aliases the other
// files name their types by.

import (
	"context"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

type (
	// Blocks is the decoder blocks of a model file and their tensors.
	Blocks = arch.Model
	// RewriteOptions are the options of Rewrite.
	RewriteOptions = edit.RewriteOptions
	// NormRule is how a fused block's norm weights are made.
	NormRule = edit.NormRule
)

// Inspect finds the decoder blocks of f, or says why its architecture
// cannot be merged.
func Inspect(f *gguf.File) (*Blocks, error) { return arch.Inspect(f) }

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
// (ggmlcodec.Codec), so that the file is the model the search scored.
func Rewrite(ctx context.Context, f *gguf.File, b *Blocks, p *merge.Plan, out string, opt RewriteOptions) error {
	return edit.Rewrite(ctx, f, b, p, out, Codec(), opt)
}

// OutputSize is the size of the file Rewrite writes for p.
func OutputSize(f *gguf.File, b *Blocks, p *merge.Plan) int64 { return edit.OutputSize(f, b, p) }

// Codec is the codec of rewrites and in-memory edits.
func Codec() edit.Codec { return ggmlcodec.Codec{} }

// rule returns the rewrite's norm rule.
func (n Norms) rule() NormRule {
	if n == NormsFirst {
		return edit.NormsFirst
	}
	return edit.NormsWeighted
}
