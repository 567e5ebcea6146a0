package shrink

// The tensor types llama.cpp's quantizer gives a model of a file type, as
// its llama_tensor_get_type chooses them (src/llama-quant.cpp of the
// pinned llama.cpp): the file type's base type for most weight matrices,
// more bits for the output layer and, in the mixtures (_M, _L, Q2_K, Q3_K_*,
// IQ3_*), for attn_v, ffn_down and attn_output in some layers, and a
// fallback type where a row does not divide into the type's blocks. Sizes
// predicted from them (predictSize) are the size check's and
// --target-size's before any work; the MoE and Falcon rules are left out.

import (
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/quant"
)

// qtensor is what the type rules read of a tensor.
type qtensor struct {
	name   string // e.g. "blk.3.attn_v.weight"
	dims   []uint64
	typ    gguf.Type
	layer  int // the block, for block tensors
	layers int // the blocks of the output model
}

// qstate is what the rules read of the model.
type qstate struct {
	ft         quant.FileType
	gqa        int  // heads per KV head
	hasOutput  bool // an output.weight of its own (else token_embd is it)
	hasImatrix bool
}

// quantizable reports whether llama.cpp quantizes t: a weight matrix (2-D
// or more, named *.weight, not a norm).
func (t qtensor) quantizable() bool {
	return len(t.dims) >= 2 && strings.HasSuffix(t.name, ".weight") && !strings.Contains(t.name, "norm")
}

// moreBits is llama.cpp's use_more_bits: the first and last eighth of the
// layers and every third one between.
func moreBits(i, n int) bool { return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2 }

// legacy reports whether ft's base type is one that llama.cpp does not
// fall back from (quant.File then quantizes every matrix to it or F16).
func legacy(t gguf.Type) bool {
	switch t {
	case gguf.TypeQ4_0, gguf.TypeQ4_1, gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ8_0, gguf.TypeIQ4_NL:
		return true
	}
	return false
}

// divides reports whether rows of ne0 values divide into t's blocks.
func divides(ne0 uint64, t gguf.Type) bool { return t.BlockSize() > 0 && ne0%t.BlockSize() == 0 }

// quantType returns the type llama.cpp gives t in a file of type q.ft.
func (q qstate) quantType(t qtensor) gguf.Type {
	if !t.quantizable() {
		return t.typ
	}
	base := q.ft.Base
	if gguf.IsFloat(base) {
		return base
	}
	n := q.ft.Name
	is := func(names ...string) bool {
		for _, s := range names {
			if n == s {
				return true
			}
		}
		return false
	}
	lowIQ := is("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M")
	i, L := t.layer, t.layers
	typ := base
	switch name := t.name; {
	case name == "output.weight" || (!q.hasOutput && name == "token_embd.weight"):
		switch {
		case !divides(t.dims[0], base):
			typ = gguf.TypeQ8_0
		case lowIQ || is("IQ3_XXS"):
			typ = gguf.TypeQ5_K
		case base != gguf.TypeQ8_0:
			typ = gguf.TypeQ6_K
		}
	case name == "token_embd.weight":
		switch {
		case is("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
			typ = gguf.TypeQ2_K
		case is("IQ2_S", "IQ2_M", "IQ3_XXS"):
			typ = gguf.TypeIQ3_S
		case is("TQ1_0", "TQ2_0"):
			typ = gguf.TypeQ4_K
		}
	case lowIQ:
		switch {
		case strings.Contains(name, "attn_v.weight") && q.gqa >= 4:
			typ = gguf.TypeQ4_K
		case strings.Contains(name, "attn_v.weight") || (strings.Contains(name, "ffn_down") && i < L/8):
			typ = gguf.TypeQ2_K
			if is("IQ2_S", "IQ2_M") {
				typ = gguf.TypeIQ3_S
			}
		case strings.Contains(name, "attn_output.weight") && is("IQ1_S", "IQ1_M"):
			typ = gguf.TypeIQ2_XXS
		case strings.Contains(name, "attn_output.weight") && is("IQ2_S", "IQ2_M"):
			typ = gguf.TypeIQ3_S
		}
	case strings.Contains(name, "attn_v.weight"):
		typ = q.attnV(base, i, L)
	case strings.Contains(name, "attn_k.weight"), strings.Contains(name, "attn_q.weight"):
		switch {
		case is("IQ3_XS"):
			typ = gguf.TypeIQ3_XXS
		case is("IQ3_XXS"):
			typ = gguf.TypeIQ2_S
		}
	case strings.Contains(name, "ffn_down"):
		typ = q.ffnDown(base, i, L)
	case strings.Contains(name, "attn_output.weight"):
		switch {
		case is("Q2_K"):
			typ = gguf.TypeQ3_K
		case is("IQ3_XXS"):
			typ = gguf.TypeIQ3_S
		case is("Q3_K_M", "IQ3_M"):
			typ = gguf.TypeQ4_K
		case is("Q3_K_L"):
			typ = gguf.TypeQ5_K
		}
	case strings.Contains(name, "attn_qkv.weight"):
		switch {
		case is("Q3_K_M", "Q3_K_L", "IQ3_M"):
			typ = gguf.TypeQ4_K
		case is("Q4_K_M"):
			typ = gguf.TypeQ5_K
		case is("Q5_K_M"):
			typ = gguf.TypeQ6_K
		}
	case strings.Contains(name, "ffn_gate"), strings.Contains(name, "ffn_up"):
		if is("IQ3_XS") && i >= L/8 && i < 7*L/8 {
			typ = gguf.TypeIQ3_XXS
		}
	}
	return fallback(typ, t.dims[0])
}

// attnV is the type of attn_v.weight in layer i of L.
func (q qstate) attnV(base gguf.Type, i, L int) gguf.Type {
	switch q.ft.Name {
	case "Q2_K":
		if q.gqa >= 4 {
			return gguf.TypeQ4_K
		}
		return gguf.TypeQ3_K
	case "Q2_K_S", "IQ3_XS", "IQ3_S":
		if q.gqa >= 4 {
			return gguf.TypeQ4_K
		}
	case "IQ3_XXS":
		switch {
		case q.gqa >= 4:
			return gguf.TypeQ4_K
		case !q.hasImatrix:
			return gguf.TypeIQ3_S
		}
	case "IQ3_M":
		return gguf.TypeQ4_K
	case "Q3_K_M":
		if i < 2 {
			return gguf.TypeQ5_K
		}
		return gguf.TypeQ4_K
	case "Q3_K_L":
		return gguf.TypeQ5_K
	case "IQ4_NL", "IQ4_XS":
		if q.gqa >= 4 {
			return gguf.TypeQ5_K
		}
	case "Q4_K_M", "Q5_K_M":
		if moreBits(i, L) {
			return gguf.TypeQ6_K
		}
	case "Q4_K_S":
		if i < 4 {
			return gguf.TypeQ5_K
		}
	}
	return base
}

// ffnDown is the type of ffn_down in layer i of L.
func (q qstate) ffnDown(base gguf.Type, i, L int) gguf.Type {
	switch q.ft.Name {
	case "Q2_K":
		return gguf.TypeQ3_K
	case "Q2_K_S":
		if i < L/8 {
			return gguf.TypeQ4_K
		}
	case "IQ3_XXS":
		if !q.hasImatrix && i < L/8 {
			return gguf.TypeQ4_K
		} else if !q.hasImatrix {
			return gguf.TypeQ3_K
		}
	case "Q3_K_M":
		if i < L/16 {
			return gguf.TypeQ5_K
		}
		return gguf.TypeQ4_K
	case "IQ3_M":
		if i < L/8 {
			return gguf.TypeQ4_K
		}
	case "Q3_K_L":
		return gguf.TypeQ5_K
	case "Q4_K_M", "Q5_K_M":
		if moreBits(i, L) {
			return gguf.TypeQ6_K
		}
	case "IQ4_NL", "IQ4_XS":
		if i < L/8 && !q.hasImatrix {
			return gguf.TypeQ5_K
		}
	case "Q4_K_S":
		if i < L/8 {
			return gguf.TypeQ5_K
		}
	case "Q4_0", "Q5_0":
		if q.hasImatrix && i < L/8 {
			if q.ft.Name == "Q4_0" {
				return gguf.TypeQ4_1
			}
			return gguf.TypeQ5_1
		}
	}
	return base
}

// fallback is the type llama.cpp uses instead of t for rows of ne0 values
// that do not divide into t's blocks (F16 when the fallback does not
// divide either).
func fallback(t gguf.Type, ne0 uint64) gguf.Type {
	if divides(ne0, t) {
		return t
	}
	switch t {
	case gguf.TypeTQ1_0, gguf.TypeTQ2_0:
		t = gguf.TypeQ4_0
	case gguf.TypeIQ2_XXS, gguf.TypeIQ2_XS, gguf.TypeIQ2_S, gguf.TypeIQ3_XXS, gguf.TypeIQ3_S, gguf.TypeIQ1_S, gguf.TypeIQ1_M,
		gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeIQ4_XS:
		t = gguf.TypeIQ4_NL
	case gguf.TypeQ4_K:
		t = gguf.TypeQ5_0
	case gguf.TypeQ5_K:
		t = gguf.TypeQ5_1
	case gguf.TypeQ6_K:
		t = gguf.TypeQ8_0
	}
	if !divides(ne0, t) {
		return gguf.TypeF16
	}
	return t
}
