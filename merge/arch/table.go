// Package arch is mka-gguf's table of the llama.cpp architectures: for each
// one, a Row that says whether a merge accepts it and how its decoder
// blocks are edited (the tensors that make a block an identity, those an
// alignment folds into, the metadata that follows the blocks, whether a
// decode can run some blocks only), and Inspect, which describes a GGUF
// file's blocks against it. Everything that needs to know an architecture
// (inspect, merge, analyze, compare, the in-memory editor, the streaming
// rewrite) reads it here, so a new architecture or a difference between two
// is written once, as a row.
package arch

import (
	"errors"
	"slices"
	"strings"
)

// ErrUnsupported means a model's architecture or structure cannot be merged.
var ErrUnsupported = errors.New("arch: unsupported model")

// Row describes one llama.cpp architecture (general.architecture). Tensor
// names are those of one block after "blk.<i>.".
type Row struct {
	Name string
	// Refused, when set, is why a merge refuses the architecture; the
	// other fields are then unused.
	Refused string
	// Identity are the tensors that write a block's contribution to the
	// residual stream: with all of them zero, a pre-norm residual block
	// (x + attn(norm(x)), then + ffn(norm(·))) is the identity. The
	// in-memory search removes a block this way.
	Identity []string
	// Fold are the tensors an alignment T of the block's output is folded
	// into, each of n_embd rows: a weight W of n_embd rows becomes Tᵀ W, a
	// bias b of n_embd values Tᵀ b.
	Fold []string
	// Optional are the tensors of Identity and Fold a model may lack
	// (biases); every block must have the others.
	Optional []string
	// Resume says that a decode can run some of the blocks only (cgo's
	// DecodeFrom and DecodeLayers, which also check the loaded graph).
	Resume bool
	// PerLayerKeys are the metadata keys (after "<arch>.") with one value
	// per block, which a rewrite selects for the blocks it keeps; nil:
	// every "<arch>." array of block_count values.
	PerLayerKeys []string
}

// The tensors of a dense pre-norm decoder block.
var (
	residualOutputs = []string{"attn_output.weight", "attn_output.bias", "ffn_down.weight", "ffn_down.bias"}
	ffnOutput       = []string{"ffn_down.weight", "ffn_down.bias"}
	outputBiases    = []string{"attn_output.bias", "ffn_down.bias"}
)

// Why some architectures are refused.
const (
	recurrent = "its blocks are recurrent (state-space), not attention blocks"
	hybrid    = "it is a hybrid of recurrent and attention blocks"
	experts   = "it is a mixture-of-experts model"
)

// table holds a row for every architecture mka-gguf knows; any other is
// refused as unknown.
var table = []Row{
	{Name: "llama", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases, Resume: true},
	{Name: "qwen2", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases, Resume: true},
	{Name: "qwen3", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases, Resume: true},
	{Name: "phi3", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "gemma", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "internlm2", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "granite", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "olmo", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "olmo2", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "stablelm", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "starcoder2", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "exaone", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},
	{Name: "smollm3", Identity: residualOutputs, Fold: ffnOutput, Optional: outputBiases},

	{Name: "gemma2", Refused: "its blocks alternate sliding-window and global attention; removing a block breaks the pattern"},
	{Name: "gemma3", Refused: "its blocks interleave sliding-window and global attention; removing a block breaks the pattern"},
	{Name: "cohere2", Refused: "its blocks interleave sliding-window and global attention"},
	{Name: "mamba", Refused: recurrent},
	{Name: "mamba2", Refused: recurrent},
	{Name: "rwkv6", Refused: "its blocks are recurrent"},
	{Name: "rwkv7", Refused: "its blocks are recurrent"},
	{Name: "jamba", Refused: hybrid},
	{Name: "falcon-h1", Refused: hybrid},
	{Name: "qwen2moe", Refused: experts},
	{Name: "qwen3moe", Refused: experts},
	{Name: "mixtral", Refused: experts},
	{Name: "deepseek2", Refused: experts},
	{Name: "llama4", Refused: "it is a mixture-of-experts model with interleaved attention"},
}

// Lookup returns the row of architecture name.
func Lookup(name string) (*Row, bool) {
	i := slices.IndexFunc(table, func(r Row) bool { return r.Name == name })
	if i < 0 {
		return nil, false
	}
	return &table[i], true
}

// Accepted returns the architectures a merge accepts, sorted.
func Accepted() []string {
	var s []string
	for _, r := range table {
		if r.Refused == "" {
			s = append(s, r.Name)
		}
	}
	slices.Sort(s)
	return s
}

// IsOptional reports whether a block may lack tensor suffix.
func (r *Row) IsOptional(suffix string) bool { return slices.Contains(r.Optional, suffix) }

// Folds reports whether an alignment folds into tensor suffix.
func (r *Row) Folds(suffix string) bool { return slices.Contains(r.Fold, suffix) }

func supportedList() string { return strings.Join(Accepted(), ", ") }
