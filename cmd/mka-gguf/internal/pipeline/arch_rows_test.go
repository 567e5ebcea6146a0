package pipeline

import (
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// rowText is calibration text for the generated models (their SPM
// vocabulary spells any text): sentences made from a few words in a
// seeded order, so that chunks differ.
func rowText() []string {
	words := strings.Fields("once upon a time there was a little girl named lily she loved to play outside in the park with her dog and the sun was warm")
	var out []string
	x := uint64(7)
	for range 64 {
		var b strings.Builder
		for range 40 {
			x = x*6364136223846793005 + 1442695040888963407
			b.WriteString(words[(x>>33)%uint64(len(words))])
			b.WriteByte(' ')
		}
		out = append(out, b.String())
	}
	return out
}

// rowConfigs are the generated models of the rows: a 12-block model of
// each architecture (gguf/synth: llama.cpp's tensor names and shapes, tied
// where the architecture has no output.weight, gemma2's and gemma3's
// sliding window on), llama with Llama 3's shapes (GQA 4:1 with an
// untied 128k vocabulary; 8:1 tied with rope_freqs and base 500000) and
// olmo2 with OLMo 3's sliding window (a pattern of 4).
func rowConfigs() map[string]synth.Config {
	out := map[string]synth.Config{}
	for _, a := range synth.Archs() {
		cfg := synth.Tiny()
		cfg.SetArch(a)
		cfg.Blocks = 12
		out[a] = cfg
	}
	gqa4 := out["llama"]
	gqa4.Heads, gqa4.KVHeads, gqa4.Vocab, gqa4.Type = 8, 2, 128256, gguf.TypeF16
	out["llama3-gqa4-128k-untied"] = gqa4
	gqa8 := out["llama"]
	gqa8.Heads, gqa8.KVHeads, gqa8.TiedEmbeddings, gqa8.RopeFreqs, gqa8.RopeBase = 8, 1, true, true, 500000
	out["llama3-gqa8-tied-rope_freqs"] = gqa8
	olmo3 := out["olmo2"]
	olmo3.SlidingWindow = 8
	out["olmo2-sliding-window"] = olmo3
	return out
}

// rowFixture writes the model of cfg and opens it.
func rowFixture(t *testing.T, name string, cfg synth.Config) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".gguf")
	if err := synth.Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	return open(t, path)
}

// drops is the plan removing the run of n blocks from current block j.
func drops(t *testing.T, blocks, j, n int) *merge.Plan {
	t.Helper()
	var steps []merge.Step
	for range n {
		steps = append(steps, merge.Step{Kind: merge.StepDrop, Blocks: [2]int{j, j}})
	}
	p, err := merge.NewPlan("test", blocks, steps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchRows proves each accepted row of merge/arch's table by
// construction on a generated model of its architecture:
//
//	(a) llama.cpp loads it and decodes finite logits;
//	(b) identity: a run of the row's period made identities in memory
//	    (arch.Row.Identity zero) gives the logits of the file with those
//	    blocks removed;
//	(c) one aligned search step (the row's alignment: a full matrix folded
//	    into ffn_down, a diagonal one into the post-FFN norm), rewritten to
//	    a file, gives the in-memory model's logits, and the alignment
//	    changed them (the fold reached the model).
//
// The measured differences go to the log (docs/architectures.md).
func TestArchRows(t *testing.T) {
	tx := rowText()
	cfgs := rowConfigs()
	for _, name := range slices.Sorted(maps.Keys(cfgs)) {
		t.Run(name, func(t *testing.T) {
			fx := rowFixture(t, name, cfgs[name])
			if err := fx.b.Mergeable(); err != nil {
				t.Fatalf("the default merge is refused: %v", err)
			}
			p := fx.b.Period
			align, err := calib.Tokens(fx.m, tx[:40], 16, 64, 1)
			if err != nil {
				t.Fatal(err)
			}
			held, err := calib.Tokens(fx.m, tx[40:], 4, 64, 2)
			if err != nil {
				t.Fatal(err)
			}
			check := held[:1] // logits of the whole vocabulary: one chunk
			// (a)
			orig := logits(t, fx.m, check)
			for _, v := range orig {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logit %v", v)
				}
			}
			// (b)
			const j = 2
			e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
			if err != nil {
				t.Fatal(err)
			}
			for k := range p {
				if err := e.Drop(j + k); err != nil {
					t.Fatal(err)
				}
			}
			inMem := logits(t, fx.m, check)
			if err := e.Reset(); err != nil {
				t.Fatal(err)
			}
			removed := logits(t, rewritten(t, fx, drops(t, fx.b.Count, j, p), edit.RewriteOptions{}), check)
			identity := maxDiff(inMem, removed)
			if identity > 1e-4 || maxDiff(orig, inMem) < 1e-3 {
				t.Errorf("blk %d..%d made identities: %g from the file without them, %g from the original", j, j+p-1, identity, maxDiff(orig, inMem))
			}
			// (c)
			e, err = NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Reset()
			s, err := NewSearcher(e, align, held, Config{Threads: 2, Align: true, Rho: 1e-3, Candidates: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r, err := s.Search(p)
			if err != nil {
				t.Fatal(err)
			}
			st := r.Steps[0]
			aln := r.Align[st.Drop-1]
			if len(r.Steps) != 1 || aln == nil || aln.IsDiagonal() != (fx.b.Arch.Align == arch.AlignDiagonal) {
				t.Fatalf("steps %+v, alignments %v: want one step of %d blocks, its alignment %s", r.Steps, r.Align, p, fx.b.Arch.Align)
			}
			merged := logits(t, fx.m, check)
			file := logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align}), check)
			unaligned := logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{}), check)
			fileMem := maxDiff(merged, file)
			if fileMem > 1e-4 || maxDiff(file, unaligned) < 1e-4 {
				t.Errorf("aligned step: file vs memory %g, aligned vs unaligned file %g", fileMem, maxDiff(file, unaligned))
			}
			if !(st.Residual < st.Unaligned) {
				t.Errorf("aligned residual %g not below the unaligned %g", st.Residual, st.Unaligned)
			}
			t.Log(rowLine(name, fx.b, identity, fileMem, st))
		})
	}
}

// rowLine is a row's measured numbers, as docs/architectures.md quotes
// them.
func rowLine(name string, b *arch.Model, identity, fileMem float64, st StepReport) string {
	return fmt.Sprintf("row %s (%s): period %d, resume %q, alignment %s: identity %.2g, file vs memory %.2g (removed blk %d..%d, residual %.3f, %.3f unaligned)",
		name, b.Arch.Name, b.Period, b.Resume, b.Arch.Align, identity, fileMem, st.Drop, st.Drop+max(st.Run, 1)-1, st.Residual, st.Unaligned)
}
