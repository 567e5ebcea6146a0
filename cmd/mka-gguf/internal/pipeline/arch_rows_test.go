package pipeline

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
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

// rowFixture writes a 12-block model of architecture a (gguf/synth:
// llama.cpp's tensor names and shapes, tied where the architecture has no
// output.weight, gemma2's and gemma3's sliding window on) and opens it.
func rowFixture(t *testing.T, a string) *fixture {
	t.Helper()
	cfg := synth.Tiny()
	cfg.SetArch(a)
	cfg.Blocks = 12
	path := filepath.Join(t.TempDir(), a+".gguf")
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
	for _, a := range synth.Archs() {
		t.Run(a, func(t *testing.T) {
			fx := rowFixture(t, a)
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
			// (a)
			orig := logits(t, fx.m, held)
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
			inMem := logits(t, fx.m, held)
			if err := e.Reset(); err != nil {
				t.Fatal(err)
			}
			removed := logits(t, rewritten(t, fx, drops(t, fx.b.Count, j, p), edit.RewriteOptions{}), held)
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
			merged := logits(t, fx.m, held)
			file := logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align}), held)
			unaligned := logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{}), held)
			fileMem := maxDiff(merged, file)
			if fileMem > 1e-4 || maxDiff(file, unaligned) < 1e-4 {
				t.Errorf("aligned step: file vs memory %g, aligned vs unaligned file %g", fileMem, maxDiff(file, unaligned))
			}
			if !(st.Residual < st.Unaligned) {
				t.Errorf("aligned residual %g not below the unaligned %g", st.Residual, st.Unaligned)
			}
			t.Log(rowLine(fx.b, identity, fileMem, st))
		})
	}
}

// rowLine is a row's measured numbers, as docs/architectures.md quotes
// them.
func rowLine(b *arch.Model, identity, fileMem float64, st StepReport) string {
	return fmt.Sprintf("row %s: period %d, resume %q, alignment %s: identity %.2g, file vs memory %.2g (removed blk %d..%d, residual %.3f, %.3f unaligned)",
		b.Arch.Name, b.Period, b.Resume, b.Arch.Align, identity, fileMem, st.Drop, st.Drop+max(st.Run, 1)-1, st.Residual, st.Unaligned)
}
