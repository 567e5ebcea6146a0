package quant

import (
	"path/filepath"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func TestParse(t *testing.T) {
	ids := map[int]string{}
	for _, ft := range fileTypes {
		got, err := Parse(ft.Name)
		if err != nil || got != ft {
			t.Fatalf("Parse(%q) = %v, %v", ft.Name, got, err)
		}
		if other, ok := ids[ft.ID]; ok {
			t.Fatalf("%s and %s are both general.file_type %d", other, ft.Name, ft.ID)
		}
		ids[ft.ID] = ft.Name
	}
	if ft, err := Parse("q4_k_m"); err != nil || ft.ID != 15 {
		t.Fatalf("case-insensitive parse: %v %v", ft, err)
	}
	if _, err := Parse("Q4_2"); err == nil {
		t.Fatal("removed type accepted")
	}
}

// TestQuantizeRoundTrip quantizes a random-weight model (rows of 256, so
// k-quants apply) to several types with llama.cpp's quantizer; the output
// records the type, holds tensors of the base type, and llama.cpp loads it.
func TestQuantizeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.gguf")
	cfg := synth.Config{Arch: "llama", Blocks: 2, Embd: 256, FFN: 512, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 128, Type: gguf.TypeF16, Seed: 3}
	if err := synth.Write(in, cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Q8_0", "Q4_0", "Q5_1", "Q4_K_M", "Q6_K", "IQ4_NL", "BF16"} {
		t.Run(name, func(t *testing.T) {
			ft, _ := Parse(name)
			out := filepath.Join(dir, name+".gguf")
			if err := File(in, out, ft, Options{Threads: 2}); err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if id, _ := f.Uint("general.file_type"); int(id) != ft.ID {
				t.Fatalf("general.file_type = %d, want %d", id, ft.ID)
			}
			i, _ := f.Tensor("blk.0.attn_q.weight")
			if got := f.Tensors[i].Type; got != ft.Base && name != "Q4_K_M" {
				t.Fatalf("attn_q type %s, want %s", got, ft.Base)
			}
			m, err := cgo.LoadModel(out, cgo.ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
		})
	}
	if err := File(in, filepath.Join(dir, "x.gguf"), FileType{Name: "IQ2_XXS", ID: 19, NeedsImatrix: true}, Options{}); err == nil {
		t.Fatal("IQ2_XXS without an importance matrix was accepted")
	}
}

// TestQ8FallbackOnOddRows quantizes tinystories-deep12 (ffn_down rows of
// 172, not a multiple of Q8_0's 32) to Q8_0: llama.cpp's quantizer refuses
// it, so the fallback quantizes what fits and keeps ffn_down in F16.
func TestQ8FallbackOnOddRows(t *testing.T) {
	in := shared.Model(t, "tinystories-deep12.gguf")
	out := filepath.Join(t.TempDir(), "q8.gguf")
	ft, _ := Parse("Q8_0")
	if err := File(in, out, ft, Options{}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]gguf.Type{"blk.0.attn_q.weight": gguf.TypeQ8_0, "blk.0.ffn_down.weight": gguf.TypeF16, "blk.0.attn_norm.weight": gguf.TypeF32}
	for name, typ := range want {
		i, ok := f.Tensor(name)
		if !ok || f.Tensors[i].Type != typ {
			t.Fatalf("%s: %v, want %s", name, f.Tensors[i].Type, typ)
		}
	}
	if id, _ := f.Uint("general.file_type"); id != 7 {
		t.Fatalf("general.file_type %d, want 7", id)
	}
	m, err := cgo.LoadModel(out, cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}
