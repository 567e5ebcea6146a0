package pipeline

import (
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// ReplaceMe cuts the run of blocks merge.ReplaceMeCut picks from the
// last-token states, folds one fitted transform into the block before it
// (lowering the in-sample residual), and the written file is the model it
// edited in memory.
func TestReplaceMe(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	chunks := tokens(t, fx.m, tx[:300], 16, 64, 1)
	test := tokens(t, fx.m, tx[300:], 2, 64, 2)
	// The last-token states of every representation, as calibration keeps them.
	L, d := fx.m.NLayer(), fx.m.NEmbd()
	last := make([][]float32, L+1)
	_, err := runner.Run(fx.m, chunks, runner.Options{Threads: 2, CaptureInput: true, Capture: func(tn cgo.Tensor) bool {
		if tn.Kind == cgo.BlockOutput {
			for c := range tn.Rows / 64 {
				last[tn.Layer+1] = append(last[tn.Layer+1], tn.Data[(c*64+63)*d:(c*64+64)*d]...)
			}
		}
		return true
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start, _, err := merge.ReplaceMeCut(last, d, 3)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Reset()
	s, err := NewSearcher(e, chunks, nil, Config{Threads: 2, Align: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.ReplaceMe(3, last)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Plan.Layout) != L-3 || r.Align[start-1] == nil || len(r.Align) != 1 {
		t.Fatalf("cut at %d: layout %v, alignments %v", start, r.Plan.Layout, r.Align)
	}
	for o, parts := range r.Plan.Layout {
		want := o
		if o >= start {
			want = o + 3
		}
		if len(parts) != 1 || parts[0].Block != want {
			t.Fatalf("cut at %d: output block %d is %v, want blk %d", start, o, parts, want)
		}
	}
	a := r.Align[start-1]
	if !(a.Residual < a.Unaligned) || a.Tokens != 16*64 || a.RhoRel != 0 {
		t.Errorf("transform: residual %g (%g without), %d tokens, ρ_rel %g; want lower, every token, no ridge", a.Residual, a.Unaligned, a.Tokens, a.RhoRel)
	}
	dm := maxDiff(logits(t, fx.m, test), logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align}), test))
	t.Logf("cut blks %d..%d: residual %.4f (%.4f without); file vs memory %.2g", start, start+2, a.Residual, a.Unaligned, dm)
	if dm > 1e-4 {
		t.Errorf("file vs in-memory model: max logit difference %g", dm)
	}
}
