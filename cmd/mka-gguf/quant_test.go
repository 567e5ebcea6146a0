package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// TestMergeQuant merges an F16 model with rows of 256 (so k-quants apply)
// and quantizes it to Q4_K_M in one command: the output has the merged
// block count, Q4_K tensors, the mka.* provenance, a report with the
// quantization, and no temporary files are left.
func TestMergeQuant(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Config{Arch: "llama", Blocks: 4, Embd: 256, FFN: 512, Heads: 4, KVHeads: 2, Vocab: 512, Ctx: 256, Type: gguf.TypeF16, Seed: 5}
	in := mtSynth(t, dir, "in.gguf", cfg, nil)
	out := filepath.Join(dir, "out.gguf")
	report := filepath.Join(dir, "r.json")
	stdout, stderr, code := run(t, "-q", "merge", in, out, "--method", "prune-reverse", "--align", "none", "--remove", "1",
		"--quant", "Q4_K_M", "--samples", "8", "--ctx", "64", "--threads", "1", "--report", report)
	wantOK(t, []string{"merge --quant"}, stdout, stderr, code)
	if n := mtBlocks(t, out); n != 3 {
		t.Fatalf("block_count %d, want 3", n)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if id, _ := f.Uint("general.file_type"); id != 15 {
		t.Fatalf("general.file_type %d, want 15 (Q4_K_M)", id)
	}
	i, _ := f.Tensor("blk.0.attn_q.weight")
	if f.Tensors[i].Type != gguf.TypeQ4_K {
		t.Fatalf("attn_q is %s, want Q4_K", f.Tensors[i].Type)
	}
	if m, ok := f.String("mka.method"); !ok || m != "prune-reverse" {
		t.Fatalf("mka.method = %q", m)
	}
	var r struct {
		Quant   string  `json:"quant"`
		BPW     float64 `json:"bits_per_weight"`
		Imatrix string  `json:"imatrix"`
		Before  int64   `json:"bytes_before"`
		After   int64   `json:"bytes_after"`
	}
	b := readFile(t, report)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Quant != "Q4_K_M" || r.Imatrix != "merged" || !(r.BPW > 4 && r.BPW < 8) || r.After*3 > r.Before {
		t.Fatalf("report %+v", r)
	}
	mtNoLeftovers(t, dir)

	// A type that needs an importance matrix is refused without one.
	stdout, stderr, code = run(t, "merge", in, filepath.Join(dir, "x.gguf"), "--method", "prune-reverse",
		"--quant", "IQ2_XXS", "--imatrix-from", "none")
	wantOneLineError(t, stdout, stderr, code, "IQ2_XXS", "importance matrix")
	mtNoLeftovers(t, dir)
}
