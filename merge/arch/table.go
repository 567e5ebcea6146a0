// Package arch is mka-gguf's table of the llama.cpp architectures: for each
// one, a Row that says whether a merge accepts it and how its decoder
// blocks are edited (the tensors that make a block an identity, those an
// alignment folds into and how, where the alignment's inputs are in the
// graph, whether a decode can run some blocks only, what the graph derives
// from the block index), and Inspect, which describes a GGUF file's blocks
// against it. Everything that needs to know an architecture (inspect,
// merge, analyze, compare, the in-memory editor, the streaming rewrite)
// reads it here, so a new architecture or a difference between two is
// written once, as a row. docs/architectures.md says how each row is
// proven.
package arch

import (
	"errors"
	"slices"
	"strings"
)

// ErrUnsupported means a model's architecture or structure cannot be merged.
var ErrUnsupported = errors.New("arch: unsupported model")

// Align says how an alignment T of a surviving block's FFN contribution
// X (x ↦ x T) is folded into the block.
type Align int

const (
	// AlignFull folds any d×d T into the rows of the tensors that write X
	// (ffn_down: W ← Tᵀ W, its bias b ← Tᵀ b): nothing follows ffn_down
	// before the residual add.
	AlignFull Align = iota
	// AlignDiagonal folds only a diagonal T = diag(t), into the weight of
	// the RMS norm that follows the FFN (post_ffw_norm: w ← t ⊙ w): with a
	// post-norm X = w ⊙ z/rms(z), and norm(T z) ≠ T norm(z) for a general
	// T, but t ⊙ (w ⊙ z/rms(z)) = (t ⊙ w) ⊙ z/rms(z).
	AlignDiagonal
)

// String names the alignment for people.
func (a Align) String() string {
	if a == AlignDiagonal {
		return "diagonal (post-norm)"
	}
	return "full matrix"
}

// Resume says which decodes of some of the blocks (cgo's DecodeLayers and
// DecodeFrom) compute what the whole model computes.
type Resume int

const (
	// ResumeNone: only whole decodes.
	ResumeNone Resume = iota
	// ResumeTokens: token batches through some blocks (the search leaves
	// out blocks it made identities); the graph scales an embedding batch
	// again, so no decode starts in the middle.
	ResumeTokens
	// ResumeAll: also embedding batches, the stream entering a block (the
	// search scores candidates from their first changed block on).
	ResumeAll
)

// String names the decodes for people.
func (r Resume) String() string {
	switch r {
	case ResumeAll:
		return "resumed (from the first changed block, identities left out)"
	case ResumeTokens:
		return "whole, identities left out (no decode starts in the middle)"
	}
	return "whole (no resume)"
}

// Pattern is behaviour llama.cpp derives from the block index at load
// time or in the graph (no GGUF key records it): block i behaves as block
// i mod Period. A removal keeps it exactly when every kept block has a
// multiple of Period removed blocks before it (blocks after the last kept
// one are free), so a merge removes runs of Period blocks.
type Pattern struct {
	Period int
	// When, if set, is the metadata key (after "<arch>.") whose value
	// must be > 0 for the pattern to exist.
	When string
	// What names the behaviour for people.
	What string
	// Caches: each kind of block has a KV cache of its own (a sliding
	// window), so an output must keep every kind: one whole period at least.
	Caches bool
}

// Row describes one llama.cpp architecture (general.architecture). Tensor
// names are those of one block after "blk.<i>.".
type Row struct {
	Name string
	// Refused, when set, is why a merge refuses the architecture; the
	// other fields are then unused.
	Refused string
	// Identity are the tensors that write a block's contribution to the
	// residual stream: with all of them zero, the block is the identity
	// (x + attn(norm(x)), then + ffn(norm(·)); a post-norm of zero is
	// zero). The in-memory search removes a block this way.
	Identity []string
	// Align is how an alignment folds, into the tensors of Fold: each of
	// n_embd rows (a weight W of n_embd rows becomes Tᵀ W, a vector b of
	// n_embd values Tᵀ b, for a diagonal T t ⊙ b).
	Align Align
	Fold  []string
	// Optional are the tensors of Identity and Fold a model may lack
	// (biases); every block must have the others.
	Optional []string
	// Input, FFNInput and FFNOutput are the graph's names (llama.cpp's cb
	// names) of block 0's input, of the residual stream F before block i's
	// FFN ("<FFNInput><i>"; "" when the graph leaves it unnamed) and of
	// what is captured instead then, the FFN's contribution X
	// ("<FFNOutput><i>": F = l_out − X). Elsewhere X = l_out − F.
	Input, FFNInput, FFNOutput string
	// Resume is which decodes of some blocks are exact (see Model.Resume).
	Resume Resume
	// Pattern, when set, is what the graph derives from the block index.
	Pattern *Pattern
	// Window says the graph reads attention.sliding_window (for its
	// Pattern, or phi3, which ignores it); in any other row the key is
	// refused (a llama.cpp that reads it would window the attention).
	Window bool
	// ScaleBlocks, when set, is the block count at which llama.cpp takes
	// the model for its 27B size and scales attention by
	// 1/sqrt(n_embd/n_head) instead of 1/sqrt(key_length): a merge must
	// not cross it unless the two are equal.
	ScaleBlocks int
	// PerLayerKeys are the metadata keys (after "<arch>.") with one value
	// per block, which a rewrite selects for the blocks it keeps; nil:
	// every "<arch>." array of block_count values.
	PerLayerKeys []string
}

// The tensors of a dense decoder block.
var (
	residualOutputs = []string{"attn_output.weight", "attn_output.bias", "ffn_down.weight", "ffn_down.bias"}
	ffnOutput       = []string{"ffn_down.weight", "ffn_down.bias"}
	outputBiases    = []string{"attn_output.bias", "ffn_down.bias"}
	postFFNNorm     = []string{"post_ffw_norm.weight"}
)

// Graph names.
const (
	inpEmbd   = "inp_embd"
	inpScaled = "inp_scaled" // gemma's graphs: inp_embd × sqrt(n_embd)
	ffnInp    = "ffn_inp-"
	saOut     = "sa_out-" // gemma's graphs: the stream after attention
)

// preNorm is a row of a pre-norm block: x + attn(norm(x)), then
// + ffn(norm(·)), F named ffn_inp-<i>, an alignment folded into ffn_down.
func preNorm(name string, resume Resume) Row {
	return Row{Name: name, Identity: residualOutputs, Align: AlignFull, Fold: ffnOutput, Optional: outputBiases,
		Input: inpEmbd, FFNInput: ffnInp, Resume: resume}
}

// postNorm is a row of a block with RMS norms after attention and FFN
// (gemma2, gemma3, olmo2): a diagonal alignment folded into post_ffw_norm.
func postNorm(name, input, f string, resume Resume) Row {
	return Row{Name: name, Identity: residualOutputs, Align: AlignDiagonal, Fold: postFFNNorm, Optional: outputBiases,
		Input: input, FFNInput: f, Resume: resume, Window: true}
}

// Why some architectures are refused.
const (
	recurrent = "its blocks are recurrent (state-space), not attention blocks"
	hybrid    = "it is a hybrid of recurrent and attention blocks"
	experts   = "it is a mixture-of-experts model"
	unproven  = "no merge of it is proven here (docs/architectures.md): "
)

// slidingWindow is the sliding-window pattern's behaviour.
const slidingWindow = "sliding-window pattern"

// table holds a row for every architecture mka-gguf knows; any other is
// refused as unknown. Each accepted row is proven by construction
// (docs/architectures.md; pipeline's TestArchRows).
var table = []Row{
	preNorm("llama", ResumeAll),
	preNorm("qwen2", ResumeAll),
	preNorm("qwen3", ResumeAll),
	preNorm("internlm2", ResumeAll),
	preNorm("exaone", ResumeAll),
	// Granite scales embeddings and residual branches by metadata: X =
	// residual_scale · ffn_out = l_out − ffn_inp, and a scale commutes
	// with T. A decode from the middle scales its input again unless
	// embedding_scale is 0 or 1 (Model.Resume).
	preNorm("granite", ResumeAll),
	// phi3 leaves the stream before the FFN unnamed: F = l_out − ffn_out.
	func() Row {
		r := preNorm("phi3", ResumeAll)
		r.FFNInput, r.FFNOutput, r.Window = "", "ffn_out-", true
		return r
	}(),
	// gemma scales its input by sqrt(n_embd) in the graph (inp_scaled),
	// for embedding batches too.
	func() Row {
		r := preNorm("gemma", ResumeTokens)
		r.Input, r.FFNInput = inpScaled, saOut
		return r
	}(),
	// smollm3 attends without RoPE in every 4th block ((i+1) % 4 == 0).
	func() Row {
		r := preNorm("smollm3", ResumeAll)
		r.Pattern = &Pattern{Period: 4, What: "NoPE every 4th block"}
		return r
	}(),
	// gemma2: even blocks attend in a sliding window, odd ones globally,
	// always (set_swa_pattern(2)); the graph scales embedding batches too.
	func() Row {
		r := postNorm("gemma2", inpScaled, saOut, ResumeTokens)
		r.Pattern, r.ScaleBlocks = &Pattern{Period: 2, What: slidingWindow, Caches: true}, 46
		return r
	}(),
	// gemma3: five sliding-window blocks, then a global one, when
	// attention.sliding_window > 0; scales token batches only.
	func() Row {
		r := postNorm("gemma3", inpScaled, saOut, ResumeAll)
		r.Pattern, r.ScaleBlocks = &Pattern{Period: 6, When: "attention.sliding_window", What: slidingWindow, Caches: true}, 62
		return r
	}(),
	// olmo2: no pre-norms; with attention.sliding_window > 0 (OLMo 3)
	// three sliding-window blocks, then a global one.
	func() Row {
		r := postNorm("olmo2", inpEmbd, ffnInp, ResumeAll)
		r.Pattern = &Pattern{Period: 4, When: "attention.sliding_window", What: slidingWindow, Caches: true}
		return r
	}(),

	{Name: "olmo", Refused: unproven + "its norms are LayerNorms without weights, which no test model here has"},
	{Name: "stablelm", Refused: unproven + "LayerNorms with biases, and a parallel block when ffn_norm is absent (the FFN does not read F)"},
	{Name: "starcoder2", Refused: unproven + "LayerNorms with biases and a non-gated MLP, which no test model here has"},
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
