// Package quant names llama.cpp's model file types (F16, Q8_0, Q4_K_M, ...)
// and quantizes GGUF files with llama.cpp's own quantizer, so results match
// llama.cpp's llama-quantize byte for byte given the same inputs.
package quant

import (
	"fmt"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
)

// FileType is a llama.cpp model file type (enum llama_ftype).
type FileType struct {
	// Name is the usual name, e.g. "Q4_K_M".
	Name string
	// ID is the llama_ftype value stored in general.file_type.
	ID int
	// Base is the ggml type most tensors get.
	Base gguf.Type
	// NeedsImatrix is true for types llama-quantize refuses to make
	// without an importance matrix.
	NeedsImatrix bool
}

// fileTypes lists the types of llama.h's enum llama_ftype that can be
// produced (removed and MoE-only entries are left out).
var fileTypes = []FileType{
	{"F32", 0, gguf.TypeF32, false},
	{"F16", 1, gguf.TypeF16, false},
	{"BF16", 32, gguf.TypeBF16, false},
	{"Q8_0", 7, gguf.TypeQ8_0, false},
	{"Q4_0", 2, gguf.TypeQ4_0, false},
	{"Q4_1", 3, gguf.TypeQ4_1, false},
	{"Q5_0", 8, gguf.TypeQ5_0, false},
	{"Q5_1", 9, gguf.TypeQ5_1, false},
	{"Q2_K", 10, gguf.TypeQ2_K, false},
	{"Q2_K_S", 21, gguf.TypeQ2_K, true},
	{"Q3_K_S", 11, gguf.TypeQ3_K, false},
	{"Q3_K_M", 12, gguf.TypeQ3_K, false},
	{"Q3_K_L", 13, gguf.TypeQ3_K, false},
	{"Q4_K_S", 14, gguf.TypeQ4_K, false},
	{"Q4_K_M", 15, gguf.TypeQ4_K, false},
	{"Q5_K_S", 16, gguf.TypeQ5_K, false},
	{"Q5_K_M", 17, gguf.TypeQ5_K, false},
	{"Q6_K", 18, gguf.TypeQ6_K, false},
	{"IQ2_XXS", 19, gguf.TypeIQ2_XXS, true},
	{"IQ2_XS", 20, gguf.TypeIQ2_XS, true},
	{"IQ2_S", 28, gguf.TypeIQ2_S, true},
	{"IQ2_M", 29, gguf.TypeIQ2_S, false},
	{"IQ3_XXS", 23, gguf.TypeIQ3_XXS, false},
	{"IQ3_XS", 22, gguf.TypeIQ3_S, false},
	{"IQ3_S", 26, gguf.TypeIQ3_S, false},
	{"IQ3_M", 27, gguf.TypeIQ3_S, false},
	{"IQ1_S", 24, gguf.TypeIQ1_S, true},
	{"IQ1_M", 31, gguf.TypeIQ1_M, true},
	{"IQ4_NL", 25, gguf.TypeIQ4_NL, false},
	{"IQ4_XS", 30, gguf.TypeIQ4_XS, false},
	{"TQ1_0", 36, gguf.TypeTQ1_0, false},
	{"TQ2_0", 37, gguf.TypeTQ2_0, false},
}

// Names returns the names of every supported file type.
func Names() []string {
	out := make([]string, len(fileTypes))
	for i, t := range fileTypes {
		out[i] = t.Name
	}
	return out
}

// Parse returns the file type with the given name (case-insensitive).
func Parse(name string) (FileType, error) {
	for _, t := range fileTypes {
		if strings.EqualFold(t.Name, name) {
			return t, nil
		}
	}
	return FileType{}, fmt.Errorf("unknown quantization type %q (one of %s)", name, strings.Join(Names(), ", "))
}

// Options configures File.
type Options struct {
	Threads         int
	AllowRequantize bool
	LeaveOutput     bool // keep output.weight unquantized
	Pure            bool // no per-tensor mixture rules
	// Imatrix maps tensor names to per-column importance (sums of squared
	// activations over count), as llama.cpp's imatrix tool defines them.
	Imatrix map[string][]float32
}

// File quantizes the GGUF model in into out as type ft with llama.cpp's
// quantizer. Types that need an importance matrix are refused without one.
func File(in, out string, ft FileType, opt Options) error {
	if ft.NeedsImatrix && len(opt.Imatrix) == 0 {
		return fmt.Errorf("%s needs an importance matrix (Options.Imatrix)", ft.Name)
	}
	f, err := gguf.Open(in)
	if err != nil {
		return err
	}
	fallback := needsFallback(f, ft)
	f.Close()
	if fallback {
		// llama.cpp would stop with "Unsupported tensor size": quantize
		// what fits and keep the rest in F16, as it does for k-quants.
		return fileWithFallback(in, out, ft, opt.Imatrix)
	}
	return cgo.QuantizeFile(in, out, cgo.QuantizeParams{
		FileType: ft.ID, Threads: opt.Threads, AllowRequantize: opt.AllowRequantize,
		LeaveOutput: opt.LeaveOutput, Pure: opt.Pure, OutputType: -1, EmbeddingType: -1,
		Imatrix: opt.Imatrix,
	})
}
