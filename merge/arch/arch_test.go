package arch

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Every row is named once; an accepted row says how to make a block an
// identity, where an alignment folds (a full alignment into ffn_down's
// rows, a diagonal one into the post-FFN norm's weight), where the graph
// has the alignment's inputs, and only tensors it names may be optional;
// a refused row says why.
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
		if want := r.Align == AlignDiagonal; want != slices.Equal(r.Fold, []string{"post_ffw_norm.weight"}) || !want && !r.Folds("ffn_down.weight") {
			t.Errorf("%s: %s alignment folds into %v", r.Name, r.Align, r.Fold)
		}
		if r.Input == "" || (r.FFNInput == "") == (r.FFNOutput == "") {
			t.Errorf("%s: graph names %q, %q, %q: want the input and one of the FFN's input or output", r.Name, r.Input, r.FFNInput, r.FFNOutput)
		}
		if p := r.Pattern; p != nil && (p.Period < 2 || p.What == "") {
			t.Errorf("%s: pattern %+v", r.Name, p)
		}
	}
	if r, ok := Lookup("llama"); !ok || r.Resume != ResumeAll || !r.Folds("ffn_down.weight") || r.Folds("attn_output.weight") {
		t.Errorf("llama's row: %+v", r)
	}
	if _, ok := Lookup("gpt2"); ok {
		t.Error("Lookup found a row for gpt2")
	}
}

// synthModel writes a synth model of cfg with extra metadata and opens it.
func synthModel(t *testing.T, cfg synth.Config, kvs ...gguf.KV) *gguf.File {
	t.Helper()
	dir := t.TempDir()
	raw, path := filepath.Join(dir, "raw.gguf"), filepath.Join(dir, "m.gguf")
	if err := synth.Write(raw, cfg); err != nil {
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

// model writes a synth llama model of 4 blocks with extra metadata and
// opens it.
func model(t *testing.T, kvs ...gguf.KV) *gguf.File { return synthModel(t, synth.Tiny(), kvs...) }

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
		{gguf.KV{Key: "general.architecture", Value: gguf.String("cohere2")}, "sliding-window"},
		{gguf.KV{Key: "general.architecture", Value: gguf.String("olmo")}, "no merge of it is proven"},
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

// archModel is a synth model of arch with blocks blocks and extra
// metadata (its own keys after "<arch>.").
func archModel(t *testing.T, arch string, blocks int, kvs ...gguf.KV) *Model {
	t.Helper()
	cfg := synth.Tiny()
	cfg.SetArch(arch)
	cfg.Blocks = blocks
	for i := range kvs {
		kvs[i].Key = arch + "." + kvs[i].Key
	}
	m, err := Inspect(synthModel(t, cfg, kvs...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func u32(v uint32) gguf.Value { return gguf.Uint32(v) }

// Index-derived patterns: the period per architecture and metadata, the
// default count, the counts a merge accepts (and the nearest valid ones it
// names), the plans that keep the pattern (runs of the period, a free
// tail) and those that do not (a single drop, a fusion of neighbours).
func TestPattern(t *testing.T) {
	for _, tc := range []struct {
		arch    string
		blocks  int
		kvs     []gguf.KV
		period  int
		deflt   int
		resume  Resume
		refused map[int]string // count → part of the message
	}{
		{"llama", 12, nil, 1, 3, ResumeAll, nil},
		{"gemma2", 12, nil, 2, 4, ResumeTokens, map[int]string{3: "remove 2 or 4", 1: "remove 2)"}},
		{"gemma3", 26, nil, 6, 6, ResumeTokens, map[int]string{7: "remove 6 or 12", 4: "runs of 6", 24: "a kind of block would be missing"}},
		{"gemma3", 12, []gguf.KV{{Key: "attention.sliding_window", Value: u32(0)}}, 1, 3, ResumeAll, nil},
		{"olmo2", 12, nil, 1, 3, ResumeAll, nil},
		{"olmo2", 12, []gguf.KV{{Key: "attention.sliding_window", Value: u32(16)}}, 4, 4, ResumeTokens, map[int]string{6: "remove 4 or 8"}},
		{"smollm3", 8, nil, 4, 4, ResumeTokens, map[int]string{5: "remove 4)"}},
		{"smollm3", 4, nil, 4, 4, ResumeTokens, map[int]string{4: "leave no run", 1: "leave no run"}},
		{"gemma", 8, nil, 1, 2, ResumeTokens, nil},
		{"granite", 8, nil, 1, 2, ResumeTokens, nil}, // embedding_scale 12
		{"granite", 8, []gguf.KV{{Key: "embedding_scale", Value: gguf.Float32(1)}}, 1, 2, ResumeAll, nil},
	} {
		m := archModel(t, tc.arch, tc.blocks, tc.kvs...)
		name := fmt.Sprintf("%s/%d/%v", tc.arch, tc.blocks, tc.kvs)
		if m.Period != tc.period || m.DefaultRemoval() != tc.deflt || m.Resume != tc.resume {
			t.Errorf("%s: period %d, default %d, resume %v; want %d, %d, %v", name, m.Period, m.DefaultRemoval(), m.Resume, tc.period, tc.deflt, tc.resume)
		}
		for n := 1; n < tc.blocks; n++ {
			err := m.CheckRemoval(n)
			want, refused := tc.refused[n]
			if tc.period > 1 && n%tc.period != 0 || tc.period >= tc.blocks {
				refused = true
			}
			if refused != (err != nil) || err != nil && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), m.Path)) {
				t.Errorf("%s: CheckRemoval(%d) = %v, want refused %v (%q)", name, n, err, refused, want)
			}
		}
		if (m.Mergeable() == nil) != (tc.period < tc.blocks) {
			t.Errorf("%s: Mergeable %v", name, m.Mergeable())
		}
		p := max(tc.period, 1)
		drops := func(blocks ...int) []merge.Step {
			var s []merge.Step
			for _, b := range blocks {
				s = append(s, merge.Step{Kind: merge.StepDrop, Blocks: [2]int{b, b}})
			}
			return s
		}
		run := make([]int, p)
		for i := range run {
			run[i] = 1
		}
		for _, c := range []struct {
			steps []merge.Step
			keeps bool
		}{
			{drops(run...), true},
			{drops(tc.blocks - 1), true}, // the last block: a free tail
			{drops(1), p == 1},
			{[]merge.Step{{Kind: merge.StepFuse, Blocks: [2]int{1, 2}, Lambda: 0.5}}, p == 1},
			// The last two fused: at λ = 1 the last block has weight 0 (a
			// free tail), at λ = 0.5 it moves.
			{[]merge.Step{{Kind: merge.StepFuse, Blocks: [2]int{tc.blocks - 2, tc.blocks - 1}, Lambda: 1}}, true},
			{[]merge.Step{{Kind: merge.StepFuse, Blocks: [2]int{tc.blocks - 2, tc.blocks - 1}, Lambda: 0.5}}, p == 1},
		} {
			if len(c.steps) >= tc.blocks {
				continue
			}
			plan, err := merge.NewPlan("test", tc.blocks, c.steps)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.CheckPlan(plan); (err == nil) != c.keeps {
				t.Errorf("%s: plan %v: %v, want keeps %v", name, plan.Layout, err, c.keeps)
			}
		}
	}
}

// llama.cpp takes a gemma2 of 46 blocks (gemma3: 62) for the 27B and
// scales its attention by 1/sqrt(n_embd/n_head) instead of
// 1/sqrt(key_length): a merge may not cross that count when the two
// differ, and may when they are equal.
func TestScaleBlocks(t *testing.T) {
	key := gguf.KV{Key: "attention.key_length", Value: u32(32)} // n_embd/n_head is 16
	for _, tc := range []struct {
		blocks, n int
		kvs       []gguf.KV
		refused   bool
	}{
		{46, 2, []gguf.KV{key}, true},
		{48, 2, []gguf.KV{key}, true},
		{48, 4, []gguf.KV{key}, false},
		{46, 2, nil, false},
	} {
		m := archModel(t, "gemma2", tc.blocks, tc.kvs...)
		err := m.CheckRemoval(tc.n)
		if (err != nil) != tc.refused || err != nil && !strings.Contains(err.Error(), "1/sqrt(key_length)") {
			t.Errorf("gemma2 of %d blocks %v, removing %d: %v, want refused %v", tc.blocks, tc.kvs, tc.n, err, tc.refused)
		}
	}
}
