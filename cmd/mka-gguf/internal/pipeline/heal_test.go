package pipeline

import (
	"math"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// The healing stage refits later blocks' ffn_down in memory; the file
// written with those refits (edit.RewriteOptions.Replace) gives the
// in-memory healed model's logits, and they are not the unhealed file's.
// Kept refits lower the held-back loss, and the decodes that scored the
// last kept one give the closing quality check.
func TestHealedFileEqualsMemory(t *testing.T) {
	path := shared.Model(t, "stories260K.gguf")
	fx := open(t, path)
	ref, err := cgo.LoadModel(path, cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	tx := texts(t)
	align := tokens(t, fx.m, tx[:300], 32, 64, 1)
	held := tokens(t, fx.m, tx[300:500], 12, 48, 2)
	test := tokens(t, fx.m, tx[500:], 3, 64, 3)
	e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Reset()
	s, err := NewSearcher(e, align, held, Config{Threads: 2, Align: true, Rho: 1e-3, Candidates: 4, Heal: true, HealRho: 1e-3, Reference: ref,
		Race: true, Quality: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Search(2)
	if err != nil {
		t.Fatal(err)
	}
	h := r.Heal
	if h == nil || h.Skipped != "" || len(h.Refits) == 0 {
		t.Fatalf("healing report %+v", h)
	}
	t.Logf("layout %v, refits %+v, held-back loss %.4f → %.4f", r.Plan.Layout, h.Refits, h.HeldBefore, h.HeldAfter)
	kept := 0
	for _, st := range h.Refits {
		if st.Kept {
			kept++
			if r.Replace[st.Block] == nil {
				t.Errorf("block %d kept but not in Replace", st.Block)
			}
		}
	}
	if kept != len(r.Replace) || kept == 0 {
		t.Fatalf("%d refits kept, %d replaced tensors (want the same, at least one)", kept, len(r.Replace))
	}
	if !(h.HeldAfter < h.HeldBefore) {
		t.Errorf("held-back loss %.4f → %.4f with %d refits kept", h.HeldBefore, h.HeldAfter, kept)
	}
	// The stage starts IN's stream where the healed model's enters its
	// first block: the blocks before it are IN's, bit for bit.
	hl, err := s.newHealer(h.First)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.close()
	fromIN, err := s.outputs(hl.orig, s.align, nil, 0, h.First-1)
	if err != nil {
		t.Fatal(err)
	}
	fromHealed, err := hl.entering()
	if err != nil {
		t.Fatal(err)
	}
	for c := range fromIN {
		if d := maxDiff(fromIN[c], fromHealed[c]); d != 0 || len(fromIN[c]) != len(fromHealed[c]) {
			t.Fatalf("chunk %d: the stream entering blk %d: healed model vs IN differ by %g", c, h.First, d)
		}
	}
	// The closing quality check comes from the decodes that scored the
	// last kept refit: the healed file against IN on the held-back text.
	healedFile := rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align, Replace: r.ReplaceTensors()})
	inDists, err := kld.NewReference(ref, held, kld.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	want, err := kld.CompareReference(inDists, healedFile, kld.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Quality == nil {
		t.Fatal("no quality check from the healing stage's decodes")
	}
	got := *r.Quality
	t.Logf("quality: healing's decodes %s; file %s", got.Line(), want.Line())
	if got.Tokens != want.Tokens || math.Abs(got.KLD-want.KLD) > 1e-3*(1+want.KLD) || math.Abs(got.PPL-want.PPL) > 1e-4*want.PPL {
		t.Errorf("the healing stage's quality %+v, the file's %+v", got, want)
	}
	inMem := logits(t, fx.m, test)
	healed := logits(t, healedFile, test)
	plain := logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align}), test)
	d, u := maxDiff(inMem, healed), maxDiff(inMem, plain)
	t.Logf("healed file vs memory %.2g, unhealed file vs memory %.2g", d, u)
	if d > 1e-4 {
		t.Errorf("healed file vs in-memory model: max logit difference %g", d)
	}
	if u < 1e-2 {
		t.Errorf("the refits change the logits by at most %g", u)
	}
}
