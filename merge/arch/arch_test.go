package arch

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// Every row is named once; an accepted row says how to make a block an
// identity and where an alignment folds, and only tensors it names may be
// optional; a refused row says why.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range table {
		if seen[r.Name] {
			t.Errorf("%s has two rows", r.Name)
		}
		seen[r.Name] = true
		if r.Refused != "" {
			continue
		}
		if len(r.Identity) == 0 || len(r.Fold) == 0 {
			t.Errorf("%s: no identity or fold tensors", r.Name)
		}
		for _, s := range r.Optional {
			if !slices.Contains(r.Identity, s) && !slices.Contains(r.Fold, s) {
				t.Errorf("%s: optional %s is neither an identity nor a fold tensor", r.Name, s)
			}
		}
	}
	if r, ok := Lookup("llama"); !ok || !r.Resume || !r.Folds("ffn_down.weight") || r.Folds("attn_output.weight") {
		t.Errorf("llama's row: %+v", r)
	}
	if _, ok := Lookup("gpt2"); ok {
		t.Error("Lookup found a row for gpt2")
	}
}

// model writes a synth llama model of 4 blocks with extra metadata and
// opens it.
func model(t *testing.T, kvs ...gguf.KV) *gguf.File {
	t.Helper()
	dir := t.TempDir()
	raw, path := filepath.Join(dir, "raw.gguf"), filepath.Join(dir, "m.gguf")
	if err := synth.Write(raw, synth.Tiny()); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	e := f.Edit()
	for _, kv := range kvs {
		e.SetKV(kv)
	}
	err = e.WriteFile(path)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if f, err = gguf.Open(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestInspect(t *testing.T) {
	f := model(t, gguf.KV{Key: "llama.test_per_layer", Value: gguf.ArrayOf([]uint32{1, 2, 3, 4})},
		gguf.KV{Key: "llama.test_five", Value: gguf.ArrayOf([]uint32{1, 2, 3, 4, 5})})
	m, err := Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch.Name != "llama" || m.Count != 4 || !m.Has("ffn_down.weight") || m.Missing(m.Arch.Identity) != "" {
		t.Errorf("Inspect: %s, %d blocks, suffixes %v", m.Arch.Name, m.Count, m.Suffixes)
	}
	if !slices.Contains(m.PerLayerKeys, "llama.test_per_layer") || slices.Contains(m.PerLayerKeys, "llama.test_five") {
		t.Errorf("per-layer keys %v: want llama.test_per_layer, not llama.test_five", m.PerLayerKeys)
	}
	// A row that lists its per-layer keys slices only those.
	only := &Row{Name: "llama", PerLayerKeys: []string{"other"}}
	for _, kv := range f.KVs {
		if perLayer(only, "llama", kv, 4) {
			t.Errorf("%s is per-layer for a row that lists only llama.other", kv.Key)
		}
	}

	for _, tc := range []struct {
		kv   gguf.KV
		want string
	}{
		{gguf.KV{Key: "general.architecture", Value: gguf.String("gemma2")}, "sliding-window"},
		{gguf.KV{Key: "general.architecture", Value: gguf.String("gpt2")}, "supported: exaone, gemma,"},
		{gguf.KV{Key: "llama.expert_count", Value: gguf.Uint32(8)}, "8 experts"},
		{gguf.KV{Key: "llama.attention.sliding_window", Value: gguf.Uint32(512)}, "llama.attention.sliding_window"},
	} {
		f := model(t, tc.kv)
		_, err := Inspect(f)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f.Path) {
			t.Errorf("%s: %v, want ErrUnsupported naming the file and %q", tc.kv.Key, err, tc.want)
		}
	}
}
