package gguf

import (
	"fmt"
	"strings"

	gp "github.com/gpustack/gguf-parser-go"
)

// Summary holds model-level facts about a file, as gguf-parser-go computes
// them. Counts that the file does not state are 0.
type Summary struct {
	// Architecture is general.architecture ("llama").
	Architecture string
	// Name is general.name.
	Name string
	// FileType describes the tensor types, e.g. "F16" or "Q4_K_M".
	FileType string
	// Parameters is the number of weights (elements of all tensors).
	Parameters uint64
	// BitsPerWeight is the data section's bits per parameter.
	BitsPerWeight float64
	// ModelSize is the bytes of the data section.
	ModelSize uint64

	BlockCount        uint64 // <arch>.block_count
	ContextLength     uint64 // <arch>.context_length
	EmbeddingLength   uint64 // <arch>.embedding_length
	FeedForwardLength uint64 // <arch>.feed_forward_length (of the first block)
	HeadCount         uint64 // <arch>.attention.head_count
	HeadCountKV       uint64 // <arch>.attention.head_count_kv
	VocabSize         uint64 // tokens in the vocabulary
	TokenizerModel    string // tokenizer.ggml.model ("llama", "gpt2")
}

// Summary parses f.Path again with github.com/gpustack/gguf-parser-go and
// returns its model-level facts. gguf-parser-go panics on some malformed
// files; a panic is recovered and returned as an error. It may also refuse
// files that Open accepts (it applies some of llama.cpp's loading rules).
func (f *File) Summary() (s Summary, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg := strings.ReplaceAll(fmt.Sprint(r), "\n", " ")
			err = fmt.Errorf("%s: gguf-parser-go panicked: %s", f.Path, msg)
		}
	}()
	gf, err := gp.ParseGGUFFile(f.Path)
	if err != nil {
		return Summary{}, fmt.Errorf("%s: gguf-parser-go: %w", f.Path, err)
	}
	md := gf.Metadata()
	ar := gf.Architecture()
	tk := gf.Tokenizer()
	s = Summary{
		Architecture:    md.Architecture,
		Name:            md.Name,
		FileType:        md.FileTypeDescriptor,
		Parameters:      uint64(gf.ModelParameters),
		BitsPerWeight:   float64(gf.ModelBitsPerWeight),
		ModelSize:       uint64(gf.ModelSize),
		BlockCount:      ar.BlockCount,
		ContextLength:   ar.MaximumContextLength,
		EmbeddingLength: ar.EmbeddingLength,
		HeadCount:       ar.AttentionHeadCount,
		HeadCountKV:     ar.AttentionHeadCountKV,
		VocabSize:       ar.VocabularyLength,
		TokenizerModel:  tk.Model,
	}
	if len(ar.FeedForwardLength) > 0 {
		s.FeedForwardLength = ar.FeedForwardLength[0]
	}
	if s.VocabSize == 0 {
		s.VocabSize = tk.TokensLength
	}
	return s, nil
}
