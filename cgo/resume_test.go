package cgo

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// TestDecodeFrom checks that a decode resumed at block first, on the
// residual stream a whole decode captured entering that block, gives the
// whole decode's logits and block outputs (with the same block numbers,
// StopAfter's too), that the model is whole again afterwards (a plain
// decode gives the first logits bit for bit), and that misuse is an error.
func TestDecodeFrom(t *testing.T) {
	m, toks := storyModel(t, ModelParams{})
	if err := m.CanResume(); err != nil {
		t.Fatal(err)
	}
	n, d, nv := len(toks), m.NEmbd(), m.NVocab()
	ctx, rec := recordingContext(t, m, true)
	logits := func() []float32 { return allLogits(ctx, n) }
	decodeAll(t, ctx, toks)
	whole, wholeOuts := logits(), rec.outs
	if len(whole) != n*nv || len(wholeOuts[m.NLayer()-1]) != n*d {
		t.Fatalf("whole decode: %d logits, %d floats of the last block", len(whole), len(wholeOuts[m.NLayer()-1]))
	}
	b := NewEmbdBatch(n, d)
	defer b.Close()
	for _, first := range []int{0, 1, 5, m.NLayer() - 1} {
		b.Clear()
		in := wholeOuts[first-1]
		for i := range n {
			b.AddEmbd(in[i*d:(i+1)*d], i, 0, true)
		}
		ctx.ClearMemory()
		rec.reset()
		if err := ctx.DecodeFrom(b, first); err != nil {
			t.Fatalf("DecodeFrom(%d): %v", first, err)
		}
		got := logits()
		var worst, scale float64
		for i := range got {
			worst = max(worst, math.Abs(float64(got[i]-whole[i])))
			scale = max(scale, math.Abs(float64(whole[i])))
		}
		t.Logf("from block %d: logits differ by at most %.3g (largest %.3g)", first, worst, scale)
		if worst > 1e-5*scale {
			t.Errorf("from block %d: logits differ from the whole decode's by %.3g", first, worst)
		}
		// The hook numbers the blocks as a whole decode does.
		for l := range m.NLayer() {
			o, ok := rec.outs[l]
			if l < first && ok {
				t.Errorf("from block %d: the hook saw block %d", first, l)
			}
			if l >= first && (len(o) != n*d || !close32(o, wholeOuts[l], 1e-5)) {
				t.Errorf("from block %d: the hook's block %d is not the whole decode's", first, l)
			}
		}
	}
	// StopAfter counts in the model's blocks too.
	if err := ctx.StopAfter(6); err != nil {
		t.Fatal(err)
	}
	b.Clear()
	for i := range n {
		b.AddEmbd(wholeOuts[4][i*d:(i+1)*d], i, 0, true)
	}
	ctx.ClearMemory()
	rec.reset()
	if err := ctx.DecodeFrom(b, 5); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.outs[6]; !ok || len(rec.outs) != 2 {
		t.Errorf("from block 5, stopped after block 6: the hook saw blocks %v", slices.Sorted(maps.Keys(rec.outs)))
	}
	if err := ctx.StopAfter(-1); err != nil {
		t.Fatal(err)
	}
	ctx.ClearMemory()
	rec.reset()
	decodeAll(t, ctx, toks)
	if !slices.Equal(logits(), whole) {
		t.Error("a whole decode after DecodeFrom differs from the one before: the model was not put back")
	}

	if err := ctx.DecodeFrom(b, m.NLayer()); err == nil {
		t.Error("DecodeFrom past the last block: no error")
	}
	tb := NewBatch(4)
	defer tb.Close()
	tb.Add(toks[0], 0, 0, true)
	if err := ctx.DecodeFrom(tb, 1); err == nil {
		t.Error("DecodeFrom of a token batch: no error")
	}
	plain, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.DecodeFrom(b, 1); err == nil {
		t.Error("DecodeFrom on a context made without Resumable: no error")
	}
}

// storyModel loads tinystories-deep12 with mp and tokenizes a sentence
// of its kind.
func storyModel(t *testing.T, mp ModelParams) (*Model, []int32) {
	t.Helper()
	m, err := LoadModel(shared.Model(t, "tinystories-deep12.gguf"), mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	toks, err := m.Tokenize("Once upon a time there was a little girl named Lily. She loved to play outside.", true, false)
	if err != nil {
		t.Fatal(err)
	}
	return m, toks
}

// blockRecorder holds what a capture hook was shown of a decode's blocks.
type blockRecorder struct {
	seen []int             // the blocks, in the order the hook saw them
	outs map[int][]float32 // their outputs; -1: the block-0 input (CaptureInput)
}

// reset forgets what the hook saw, before a decode.
func (r *blockRecorder) reset() { r.seen, r.outs = nil, map[int][]float32{} }

// recordingContext makes a Resumable context on m whose capture hook
// records every block output it is shown (and the block-0 input with
// captureInput) in the returned recorder; the context closes with t.
func recordingContext(t *testing.T, m *Model, captureInput bool) (*Context, *blockRecorder) {
	t.Helper()
	r := &blockRecorder{}
	r.reset()
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, Resumable: true, CaptureInput: captureInput,
		Capture: func(tn Tensor) bool {
			if tn.Kind == BlockOutput {
				r.seen = append(r.seen, tn.Layer)
				r.outs[tn.Layer] = slices.Clone(tn.Data)
			}
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx, r
}

// allLogits returns the logits of the first n batch tokens of ctx's last
// decode, concatenated.
func allLogits(ctx *Context, n int) []float32 {
	var all []float32
	for i := range n {
		all = append(all, ctx.Logits(i)...)
	}
	return all
}

// close32 reports whether a and b have the same length and differ by at
// most tol relative to b's largest magnitude.
func close32(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	var worst, scale float64
	for i := range a {
		worst = max(worst, math.Abs(float64(a[i]-b[i])))
		scale = max(scale, math.Abs(float64(b[i])))
	}
	return worst <= tol*max(scale, 1e-30)
}

// TestDecodeLayers checks that a decode that leaves out identity blocks
// (their attn_output and ffn_down zeroed) gives the logits of a whole
// decode of the same model bit for bit, from tokens and from a captured
// stream, that the hook names the blocks it sees by their loaded numbers
// (StopAfter too), and that a list that is not of distinct blocks is
// refused.
func TestDecodeLayers(t *testing.T) {
	m, toks := storyModel(t, ModelParams{NoMmap: true})
	dead := map[int]bool{3: true, 4: true, 9: true}
	for b := range dead {
		for _, s := range []string{"attn_output.weight", "ffn_down.weight"} {
			w, err := m.Weight(fmt.Sprintf("blk.%d.%s", b, s))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Set(make([]byte, w.Bytes())); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, d := len(toks), m.NEmbd()
	ctx, rec := recordingContext(t, m, false)
	logits := func() []float32 { return allLogits(ctx, n) }
	decodeAll(t, ctx, toks)
	whole, wholeOuts := logits(), rec.outs
	var live []int
	for b := range m.NLayer() {
		if !dead[b] {
			live = append(live, b)
		}
	}
	tb := NewBatch(n)
	defer tb.Close()
	for i, tok := range toks {
		tb.Add(tok, i, 0, true)
	}
	rec.reset()
	ctx.ClearMemory()
	if err := ctx.DecodeLayers(tb, live); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(logits(), whole) {
		t.Error("tokens through the live blocks: logits differ from the whole decode's")
	}
	if !slices.Equal(rec.seen, live) {
		t.Errorf("the hook saw blocks %v, want %v", rec.seen, live)
	}
	for _, b := range live {
		if !slices.Equal(rec.outs[b], wholeOuts[b]) {
			t.Errorf("block %d's output differs from the whole decode's", b)
		}
	}
	// From the stream entering block 5 (the output of block 2: 3 and 4 are
	// identities), through the live blocks from 5 on, stopped after 8.
	eb := NewEmbdBatch(n, d)
	defer eb.Close()
	for i := range n {
		eb.AddEmbd(wholeOuts[2][i*d:(i+1)*d], i, 0, true)
	}
	if err := ctx.StopAfter(8); err != nil {
		t.Fatal(err)
	}
	rec.reset()
	ctx.ClearMemory()
	if err := ctx.DecodeLayers(eb, live[3:]); err != nil {
		t.Fatal(err)
	}
	if want := []int{5, 6, 7, 8}; !slices.Equal(rec.seen, want) {
		t.Errorf("from block 5, stopped after 8: the hook saw %v, want %v", rec.seen, want)
	}
	if err := ctx.StopAfter(-1); err != nil {
		t.Fatal(err)
	}
	ctx.ClearMemory()
	if err := ctx.DecodeLayers(eb, live[3:]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(logits(), whole) {
		t.Error("the stream through the live blocks from 5 on: logits differ from the whole decode's")
	}
	for _, bad := range [][]int{nil, {0, 0}, {1, m.NLayer()}, {-1}} {
		if err := ctx.DecodeLayers(tb, bad); err == nil {
			t.Errorf("DecodeLayers(%v): no error", bad)
		}
	}
	// The model is whole again.
	ctx.ClearMemory()
	decodeAll(t, ctx, toks)
	if !slices.Equal(logits(), whole) {
		t.Error("a whole decode after DecodeLayers differs from the one before")
	}
}
