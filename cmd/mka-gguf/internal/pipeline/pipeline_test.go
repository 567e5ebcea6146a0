package pipeline

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ggmlcodec"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/internal/shared"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/merge/edit"
	"github.com/mka-gguf/mka-gguf/quant"
)

// fixture is a loaded model and its file.
type fixture struct {
	path string
	m    *cgo.Model
	f    *gguf.File
	b    *arch.Model
}

// prefilled runs the calibration pass over cal (chunks of ctx tokens)
// with a Prefill of 12 alignment chunks (the budgets as NewPrefill takes
// them) and returns it; the caller closes it.
func prefilled(t *testing.T, fx *fixture, cal [][]int32, ctx int, statsBytes, streamBytes int64, minCandidates int) *Prefill {
	t.Helper()
	pf := NewPrefill(fx.m, fx.b, ctx, len(cal), 12, runner.SeqsPerDecode(ctx, 0), 2, statsBytes, streamBytes, minCandidates)
	if _, err := calib.Run(fx.m, cal, calib.Options{Threads: 2, Observe: pf.Capture, ObserveBefore: pf.Before}); err != nil {
		pf.Close()
		t.Fatal(err)
	}
	return pf
}

func open(t *testing.T, path string) *fixture {
	t.Helper()
	return load(t, path, cgo.ModelParams{NoMmap: true})
}

// load is open with the model loaded as mp says (mapped: edits take
// private buffers).
func load(t *testing.T, path string, mp cgo.ModelParams) *fixture {
	t.Helper()
	m, err := cgo.LoadModel(path, mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b, err := arch.Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{path: path, m: m, f: f, b: b}
}

// tokens is calib.Tokens for a test: n chunks of ctx tokens of text.
func tokens(t *testing.T, m *cgo.Model, text []string, n, ctx int, seed uint64) [][]int32 {
	t.Helper()
	c, err := calib.Tokens(m, text, n, ctx, seed)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func texts(t *testing.T) []string {
	b, err := os.ReadFile(shared.Path(t, "data/tinystories-train.txt"))
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(string(b), "\n\n")
	return p[:min(600, len(p))]
}

// logits returns the logits of every token of chunks, concatenated.
func logits(t *testing.T, m *cgo.Model, chunks [][]int32) []float32 {
	t.Helper()
	var out []float32
	_, err := runner.Run(m, chunks, runner.Options{Threads: 2, Logits: true}, func(d *runner.Decoded) error {
		for i := range d.Count {
			for k := range chunks[d.First+i] {
				out = append(out, d.Logits(i, k)...)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// quantized returns path re-encoded as type q in a temporary file (path
// itself when q is empty).
func quantized(t *testing.T, path, q string) string {
	t.Helper()
	if q == "" {
		return path
	}
	ft, err := quant.Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "q.gguf")
	if err := quant.File(path, out, ft, quant.Options{Threads: 2}); err != nil {
		t.Fatal(err)
	}
	return out
}

// foldProduct returns the product the editor folds with (ggml's CPU
// device), for a rewrite that must match the in-memory model bit for bit.
func foldProduct(t *testing.T) merge.MatMulTN {
	t.Helper()
	p, err := cgo.NewProduct(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p.Compute
}

// rewritten writes fx's model with plan and opt (folds by foldProduct) to
// a temporary file and loads it.
func rewritten(t *testing.T, fx *fixture, plan *merge.Plan, opt edit.RewriteOptions) *cgo.Model {
	t.Helper()
	opt.Product = foldProduct(t)
	out := filepath.Join(t.TempDir(), "rewritten.gguf")
	if err := edit.Rewrite(context.Background(), fx.f, fx.b, plan, out, ggmlcodec.Codec{}, opt); err != nil {
		t.Fatal(err)
	}
	m, err := cgo.LoadModel(out, cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func maxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// A block dropped in memory is an exact identity: the edited model gives
// the logits of the file with that block removed, and Restore gives back
// the original logits bit for bit.
func TestDropInMemoryEqualsRemovedFile(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	chunks := tokens(t, fx.m, texts(t), 4, 64, 1)
	orig := logits(t, fx.m, chunks)
	e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Drop(5); err != nil {
		t.Fatal(err)
	}
	edited := logits(t, fx.m, chunks)

	plan, err := merge.NewPlan("test", fx.b.Count, []merge.Step{{Kind: merge.StepDrop, Blocks: [2]int{5, 5}}})
	if err != nil {
		t.Fatal(err)
	}
	removed := logits(t, rewritten(t, fx, plan, edit.RewriteOptions{}), chunks)
	if d := maxDiff(edited, removed); d > 1e-4 {
		t.Errorf("in-memory drop vs removed file: max logit difference %g", d)
	}
	if d := maxDiff(orig, edited); d < 1e-3 {
		t.Errorf("dropping block 5 changed the logits by only %g: the edit did not reach the model", d)
	}
	if err := e.Restore(); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(orig, logits(t, fx.m, chunks)); d != 0 {
		t.Errorf("after Restore the logits differ from the original by %g", d)
	}
}

// A search step with alignment: the aligned candidate's residual is below
// the unaligned one, its held-back loss is lower than the same drop without
// alignment, and the rewritten file (alignment folded by edit.Rewrite)
// reproduces the in-memory model.
func TestAlignedSearchStep(t *testing.T) {
	for _, tc := range []struct {
		model string
		quant string // re-encode the model first (folding into a quantized tensor)
		tol   float64
	}{
		{"tinystories-deep12.gguf", "", 1e-4},
		{"stories15M-f16.gguf", "Q8_0", 1e-4},
		{"stories15M-f16.gguf", "Q4_K_M", 1e-4},
	} {
		t.Run(tc.model+tc.quant, func(t *testing.T) {
			fx := open(t, quantized(t, shared.Model(t, tc.model), tc.quant))
			tx := texts(t)
			align, err := calib.Tokens(fx.m, tx[:300], 24, 64, 1)
			if err != nil {
				t.Fatal(err)
			}
			held, err := calib.Tokens(fx.m, tx[300:], 6, 64, 2)
			if err != nil {
				t.Fatal(err)
			}
			run := func(alignOn bool) (*Result, []float32) {
				e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Reset()
				s, err := NewSearcher(e, align, held, Config{Threads: 2, Align: alignOn, Rho: 1e-3, Candidates: 2, ScoreAll: true})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				r, err := s.Search(1)
				if err != nil {
					t.Fatal(err)
				}
				return r, logits(t, fx.m, held[:2])
			}
			ra, inMem := run(true)
			ru, _ := run(false)
			st := ra.Steps[0]
			if !(st.Residual < st.Unaligned) {
				t.Errorf("aligned residual %g not below unaligned %g", st.Residual, st.Unaligned)
			}
			for _, c := range st.Candidates {
				if c.Residual > c.Unaligned+1e-9 || c.Stream > c.StreamUnaligned+1e-9 || !(c.Stream > 0) {
					t.Errorf("candidate %d: aligned residuals %g, %g above unaligned %g, %g (or zero)", c.Drop, c.Residual, c.Stream, c.Unaligned, c.StreamUnaligned)
				}
			}
			// The same drop without alignment scores worse on held-back text.
			var un float64 = math.NaN()
			for _, c := range ru.Steps[0].Candidates {
				if c.Drop == st.Drop {
					un = c.HeldNLL
				}
			}
			if !(st.HeldNLL < un) {
				t.Errorf("drop %d: held-back loss %g aligned, %g unaligned", st.Drop, st.HeldNLL, un)
			}
			if len(ra.Align) != 1 || ra.Align[st.Drop-1] == nil {
				t.Fatalf("alignments %v, want one for output block %d", ra.Align, st.Drop-1)
			}
			// Write and compare with the in-memory model (which Reset undid).
			out := filepath.Join(t.TempDir(), "aligned.gguf")
			if err := edit.Rewrite(context.Background(), fx.f, fx.b, ra.Plan, out, ggmlcodec.Codec{}, edit.RewriteOptions{Align: ra.Align, Product: foldProduct(t)}); err != nil {
				t.Fatal(err)
			}
			of, err := gguf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer of.Close()
			name := "blk.0.ffn_down.weight"
			i, _ := of.Tensor(name)
			j, _ := fx.f.Tensor(name)
			if of.Tensors[i].Type != fx.f.Tensors[j].Type {
				t.Errorf("%s is %s after the fold, was %s", name, of.Tensors[i].Type, fx.f.Tensors[j].Type)
			}
			m2, err := cgo.LoadModel(out, cgo.ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			d := maxDiff(inMem, logits(t, m2, held[:2]))
			t.Logf("drop %d: residual %.4f (%.4f unaligned), held-back loss %.4f (%.4f unaligned), file vs memory %.2g", st.Drop, st.Residual, st.Unaligned, st.HeldNLL, un, d)
			if d > tc.tol {
				t.Errorf("rewritten file vs in-memory model: max logit difference %g (tolerance %g)", d, tc.tol)
			}
			if d := maxDiff(inMem, logits(t, fx.m, held[:2])); d < 1e-3 {
				t.Errorf("Reset left the merged weights in place (difference %g)", d)
			}
		})
	}
}

// Committed edits live in the loaded model (no copy kept when its buffers
// can be read back): a tentative edit on top of one is undone by Restore
// bit for bit, and Reset gives back the file's model bit for bit, for F32
// and for a quantized type that ggml's CPU backend may repack; on a
// memory-mapped model too, where Reset also frees every private buffer.
func TestEditorRestoresCommittedEdits(t *testing.T) {
	for _, tc := range []struct {
		model, q          string
		keepBytes, mapped bool
	}{{"tinystories-deep12.gguf", "", false, false}, {"tinystories-deep12.gguf", "", true, false}, {"stories15M-f16.gguf", "Q4_0", false, false},
		{"tinystories-deep12.gguf", "", false, true}, {"stories15M-f16.gguf", "Q4_0", false, true}} {
		q := tc.q
		t.Run(fmt.Sprintf("%s%s/keepBytes=%v/mapped=%v", tc.model, q, tc.keepBytes, tc.mapped), func(t *testing.T) {
			fx := load(t, quantized(t, shared.Model(t, tc.model), q), cgo.ModelParams{NoMmap: !tc.mapped})
			chunks, err := calib.Tokens(fx.m, texts(t), 2, 64, 1)
			if err != nil {
				t.Fatal(err)
			}
			orig := logits(t, fx.m, chunks)
			e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
			if err != nil {
				t.Fatal(err)
			}
			e.keepBytes = tc.keepBytes
			d := fx.m.NEmbd()
			shear := func(s float64) *merge.Alignment {
				a := merge.Identity(d)
				for i := range d - 1 {
					a.T[i*d+i+1] = float32(s)
				}
				return a
			}
			if err := e.Align(3, shear(0.3)); err != nil {
				t.Fatal(err)
			}
			if err := e.Drop(4); err != nil {
				t.Fatal(err)
			}
			e.Commit(4, 1)
			w, _ := fx.m.Weight("blk.3.ffn_down.weight")
			t.Logf("%s readable: %v, committed tensors kept as bytes: %d", w.Name, w.Readable(), len(e.committed))
			if kept := len(e.committed); w.Readable() && !tc.keepBytes && kept != 0 {
				t.Errorf("%d committed tensors kept as bytes, though the model's buffers can be read back", kept)
			}
			if kept := len(e.committed); (tc.keepBytes || !w.Readable()) && kept == 0 {
				t.Error("no committed bytes kept for weights that are not read back")
			}
			if tc.mapped && fx.m.PrivateBytes() == 0 {
				t.Error("committed edits of a mapped model took no private buffers")
			}
			committed := logits(t, fx.m, chunks)
			if err := e.Align(3, shear(-0.2)); err != nil {
				t.Fatal(err)
			}
			if err := e.Drop(3); err != nil {
				t.Fatal(err)
			}
			if diff := maxDiff(committed, logits(t, fx.m, chunks)); diff < 1e-3 {
				t.Fatalf("the tentative edit changed the logits by only %g", diff)
			}
			if err := e.Restore(); err != nil {
				t.Fatal(err)
			}
			if diff := maxDiff(committed, logits(t, fx.m, chunks)); diff != 0 {
				t.Errorf("Restore after an edit of a committed block: logits differ by %g", diff)
			}
			if err := e.Reset(); err != nil {
				t.Fatal(err)
			}
			if diff := maxDiff(orig, logits(t, fx.m, chunks)); diff != 0 {
				t.Errorf("after Reset the logits differ from the file's by %g", diff)
			}
			if n := fx.m.PrivateBytes(); n != 0 {
				t.Errorf("after Reset %d bytes of private buffers remain", n)
			}
		})
	}
}

// A fixed plan of drops applied with alignment (Searcher.Apply, the aligned
// pruning baselines) leaves in memory the model that the rewrite writes:
// each step drops its block and aligns the one before it, so the second
// step's pass runs on the model the file holds.
func TestAppliedPlanEqualsFile(t *testing.T) {
	fx := open(t, shared.Model(t, "tinystories-deep12.gguf"))
	tx := texts(t)
	align := tokens(t, fx.m, tx[:300], 12, 64, 1)
	chunks := tokens(t, fx.m, tx[300:], 2, 64, 1)
	plan, err := merge.NewPlan("test", fx.b.Count, []merge.Step{{Kind: merge.StepDrop, Blocks: [2]int{8, 8}}, {Kind: merge.StepDrop, Blocks: [2]int{3, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEditor(fx.m, fx.f, fx.b, ggmlcodec.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Reset()
	s, err := NewSearcher(e, align, nil, Config{Threads: 2, Align: true, Rho: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Apply(plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Align) != 2 || r.Align[6] == nil || r.Align[2] == nil { // loaded blocks 7 and 2
		t.Fatalf("alignments of output blocks %v, want 2 and 6", r.Align)
	}
	inMem := logits(t, fx.m, chunks)
	d := maxDiff(inMem, logits(t, rewritten(t, fx, r.Plan, edit.RewriteOptions{Align: r.Align}), chunks))
	t.Logf("two aligned drops: file vs memory %.2g", d)
	if d > 1e-4 {
		t.Errorf("applied plan: file vs in-memory model, max logit difference %g", d)
	}
}
