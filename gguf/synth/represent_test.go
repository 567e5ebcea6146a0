package synth

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// writeOpen writes cfg and opens it; the file closes with the test.
func writeOpen(t *testing.T, cfg Config) (*gguf.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), cfg.Arch+".gguf")
	if err := Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

// rows returns the rows (ne1) of a 2-D tensor as byte slices.
func rows(t *testing.T, f *gguf.File, name string) [][]byte {
	t.Helper()
	i, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %s", f.Path, name)
	}
	b, err := f.TensorBytes(i)
	if err != nil {
		t.Fatal(err)
	}
	n := int(f.Tensors[i].Dims[1])
	size := len(b) / n
	out := make([][]byte, n)
	for r := range out {
		out[r] = b[r*size : (r+1)*size]
	}
	return out
}

// neoxOrder is the row order Represent gives q and k for NEOX RoPE,
// written out for head size 4 and extended by the same rule.
func neoxOrder(heads, hd int) []int {
	var out []int
	for h := range heads {
		for j := range hd / 2 {
			out = append(out, h*hd+2*j)
		}
		for j := range hd / 2 {
			out = append(out, h*hd+2*j+1)
		}
	}
	return out
}

// TestRepresentLayout re-presents a generated llama model (F16, GQA 2:1)
// as every architecture and checks that the result has exactly the
// tensors and shapes Write generates for that architecture, the renamed
// metadata, and the data: q and k rows of each head in NEOX order where
// the recipe says, v and everything else byte for byte, zero biases,
// phi3's stacked tensors.
func TestRepresentLayout(t *testing.T) {
	src := small("llama", gguf.TypeF16, false)
	in, inPath := writeOpen(t, src)
	hd := src.Embd / src.Heads
	if s := fmt.Sprint(neoxOrder(1, 4)); s != "[0 2 1 3]" {
		t.Fatalf("neoxOrder(1, 4) = %s", s)
	}
	for _, arch := range RepresentArchs() {
		t.Run(arch, func(t *testing.T) {
			outPath := filepath.Join(t.TempDir(), "out.gguf")
			if err := Represent(inPath, arch, outPath); err != nil {
				t.Fatal(err)
			}
			out, err := gguf.Open(outPath)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			cfg := src
			cfg.Arch = arch
			like, _ := writeOpen(t, cfg)
			shapes := map[string][]uint64{}
			for _, ti := range like.Tensors {
				shapes[ti.Name] = ti.Dims
			}
			if len(out.Tensors) != len(like.Tensors) {
				t.Errorf("%d tensors, Write makes %d", len(out.Tensors), len(like.Tensors))
			}
			for _, ti := range out.Tensors {
				if !reflect.DeepEqual(ti.Dims, shapes[ti.Name]) {
					t.Errorf("%s: %v, Write makes %v", ti.Name, ti.Dims, shapes[ti.Name])
				}
			}
			for _, kv := range in.KVs {
				key := kv.Key
				if strings.HasPrefix(key, "llama.") {
					key = arch + key[len("llama"):]
				}
				if got, ok := out.KV(key); !ok || (key != "general.architecture" && !reflect.DeepEqual(got.Value, kv.Value)) {
					t.Errorf("%s: %v (%v), want %v", key, got.Value, ok, kv.Value)
				}
			}
			if out.Arch() != arch {
				t.Errorf("architecture %q", out.Arch())
			}
			checkRepresentedData(t, in, out, arch, src.Heads, src.KVHeads, hd)
		})
	}
}

// checkRepresentedData compares block 1's tensors of in and out.
func checkRepresentedData(t *testing.T, in, out *gguf.File, arch string, heads, kvHeads, hd int) {
	permuted := func(name string, h int) [][]byte {
		src := rows(t, in, name)
		if arch != "qwen2" && arch != "phi3" && arch != "exaone" {
			return src
		}
		var dst [][]byte
		for _, r := range neoxOrder(h, hd) {
			dst = append(dst, src[r])
		}
		return dst
	}
	q, k, v := permuted("blk.1.attn_q.weight", heads), permuted("blk.1.attn_k.weight", kvHeads), rows(t, in, "blk.1.attn_v.weight")
	want := map[string][][]byte{"blk.1.attn_output.weight": rows(t, in, "blk.1.attn_output.weight"),
		"blk.1.ffn_down.weight": rows(t, in, "blk.1.ffn_down.weight"), "token_embd.weight": rows(t, in, "token_embd.weight"),
		"output.weight": rows(t, in, "output.weight")}
	if arch == "phi3" {
		want["blk.1.attn_qkv.weight"] = append(append(q, k...), v...)
		want["blk.1.ffn_up.weight"] = append(rows(t, in, "blk.1.ffn_gate.weight"), rows(t, in, "blk.1.ffn_up.weight")...)
	} else {
		want["blk.1.attn_q.weight"], want["blk.1.attn_k.weight"], want["blk.1.attn_v.weight"] = q, k, v
		want["blk.1.ffn_gate.weight"], want["blk.1.ffn_up.weight"] = rows(t, in, "blk.1.ffn_gate.weight"), rows(t, in, "blk.1.ffn_up.weight")
	}
	for name, w := range want {
		if got := rows(t, out, name); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: data differs from the recipe's", name)
		}
	}
	for _, n := range []string{"blk.1.attn_norm.weight", "blk.1.ffn_norm.weight", "output_norm.weight"} {
		if !reflect.DeepEqual(readFloats(t, out, n), readFloats(t, in, n)) {
			t.Errorf("%s differs", n)
		}
	}
	if arch == "qwen2" {
		for _, n := range []string{"blk.1.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias"} {
			for _, x := range readFloats(t, out, n) {
				if x != 0 {
					t.Fatalf("%s holds %v", n, x)
				}
			}
		}
	}
	if arch == "granite" {
		for key, want := range map[string]float32{"embedding_scale": 1, "residual_scale": 1, "logit_scale": 1,
			"attention.scale": float32(1 / math.Sqrt(float64(hd)))} {
			if v, ok := out.Float("granite." + key); !ok || float32(v) != want {
				t.Errorf("granite.%s = %v (%v), want %v", key, v, ok, want)
			}
		}
	}
}

// TestRepresentTied checks a tied model: internlm2 gets output.weight, a
// copy of token_embd; the others stay tied.
func TestRepresentTied(t *testing.T) {
	_, inPath := writeOpen(t, small("llama", gguf.TypeF32, true))
	for _, arch := range []string{"internlm2", "qwen2"} {
		outPath := filepath.Join(t.TempDir(), arch+".gguf")
		if err := Represent(inPath, arch, outPath); err != nil {
			t.Fatal(err)
		}
		out, err := gguf.Open(outPath)
		if err != nil {
			t.Fatal(err)
		}
		_, has := out.Tensor("output.weight")
		if has != (arch == "internlm2") {
			t.Errorf("%s: output.weight present = %v", arch, has)
		}
		if has && !reflect.DeepEqual(rows(t, out, "output.weight"), rows(t, out, "token_embd.weight")) {
			t.Errorf("%s: output.weight is not token_embd", arch)
		}
		out.Close()
	}
}

// TestRepresentErrors checks that what cannot be re-presented exactly is
// refused with an error naming the file and the reason, leaving no file.
func TestRepresentErrors(t *testing.T) {
	_, llama := writeOpen(t, small("llama", gguf.TypeF32, false))
	_, qwen := writeOpen(t, small("qwen2", gguf.TypeF32, false))
	freqsCfg := small("llama", gguf.TypeF32, false)
	freqsCfg.RopeFreqs = true
	freqs, _ := writeOpen(t, freqsCfg)
	edited := func(name string, edit func(e *gguf.Edit) error) string {
		f, err := gguf.Open(llama)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		e := f.Edit()
		if err := edit(e); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := e.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// attn_v in F16 among F32 q and k: phi3 cannot stack them.
	mixed := edited("mixed.gguf", func(e *gguf.Edit) error {
		info := gguf.TensorInfo{Name: "blk.0.attn_v.weight", Dims: []uint64{64, 32}, Type: gguf.TypeF16}
		return e.ReplaceTensor(info.Name, info, bytes.NewReader(make([]byte, info.Size())))
	})
	// An extra tensor: the llama file with blk.0.attn_output.bias added.
	bias := filepath.Join(t.TempDir(), "bias.gguf")
	{
		f, err := gguf.Open(llama)
		if err != nil {
			t.Fatal(err)
		}
		var outs []gguf.OutTensor
		for i := range f.Tensors {
			outs = append(outs, f.OutTensor(i))
		}
		info := gguf.TensorInfo{Name: "blk.0.attn_output.bias", Dims: []uint64{64}, Type: gguf.TypeF32}
		outs = append(outs, gguf.OutTensor{Info: info, Src: bytes.NewReader(make([]byte, info.Size()))})
		err = gguf.WriteFile(bias, f.Version, f.KVs, f.Alignment, outs)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ in, arch, want string }{
		{llama, "gemma", "unknown architecture"},
		{qwen, "phi3", `architecture "qwen2", want llama`},
		{freqs.Path, "qwen2", "rope_freqs"},
		{freqs.Path, "granite", "rope_freqs"},
		{mixed, "phi3", "one type"},
		{bias, "qwen2", "blk.0.attn_output.bias"},
		{filepath.Join(t.TempDir(), "missing.gguf"), "qwen2", "missing.gguf"},
	} {
		out := filepath.Join(t.TempDir(), "out.gguf")
		err := Represent(c.in, c.arch, out)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.in)) {
			t.Errorf("%s as %s: %v, want an error naming the file and %q", filepath.Base(c.in), c.arch, err, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s as %s: left a file", filepath.Base(c.in), c.arch)
		}
	}
	// Mixed types stay fine where nothing is stacked.
	if err := Represent(mixed, "qwen2", filepath.Join(t.TempDir(), "out.gguf")); err != nil {
		t.Error(err)
	}
}
