package cgo

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// The tests of this file check, on a generated model of every
// architecture, what merge/arch's table says of llama.cpp's graph: the
// capture names of each row, and which decodes of some blocks are exact.

// rowModel writes a 12-block model of arch (tied where the architecture
// has no output.weight), loads it with writable weights and returns it,
// its table entry and a sentence's tokens (past gemma's sliding window).
func rowModel(t *testing.T, a string) (*Model, *arch.Model, []int32) {
	t.Helper()
	cfg := synth.Tiny()
	cfg.SetArch(a)
	cfg.Blocks = 12
	path := filepath.Join(t.TempDir(), a+".gguf")
	if err := synth.Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := arch.Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(path, ModelParams{NoMmap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	toks, err := m.Tokenize(archText, true, false)
	if err != nil {
		t.Fatal(err)
	}
	return m, b, toks
}

// zeroBlocks makes blocks identities (attn_output and ffn_down zero) and
// returns what puts them back.
func zeroBlocks(t *testing.T, m *Model, suffixes []string, blocks ...int) (restore func()) {
	t.Helper()
	var undo []func()
	for _, b := range blocks {
		for _, s := range suffixes {
			w, err := m.Weight(fmt.Sprintf("blk.%d.%s", b, s))
			if err != nil {
				t.Fatal(err)
			}
			orig := make([]byte, w.Bytes())
			if err := w.Get(orig); err != nil {
				t.Fatal(err)
			}
			if err := w.Set(make([]byte, w.Bytes())); err != nil {
				t.Fatal(err)
			}
			undo = append(undo, func() { w.Set(orig) })
		}
	}
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

// TestRowCaptureNames captures every block with its row's graph names
// (arch.Row.Input, FFNInput, FFNOutput): the hook sees the block-0 input
// as block 0 reads it (gemma's graphs scale inp_embd by sqrt(n_embd)) and
// every block's stream before its FFN, F, or the FFN's contribution X
// (F = l_out − X); and F is that stream: with the block's ffn_down zero,
// its output is F (bit for bit where the graph names F).
func TestRowCaptureNames(t *testing.T) {
	for _, a := range synth.Archs() {
		t.Run(a, func(t *testing.T) {
			m, b, toks := rowModel(t, a)
			r := b.Arch
			n, d := len(toks), m.NEmbd()
			in, plainIn := map[int][]float32{}, map[int][]float32{}
			f, out := map[int][]float32{}, map[int][]float32{}
			decode := func(names CaptureNames, input, fs map[int][]float32) {
				ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, CaptureInput: true, CaptureFFNInput: true,
					CaptureNames: names, Capture: func(tn Tensor) bool {
						switch {
						case tn.Layer < 0:
							input[0] = slices.Clone(tn.Data)
						case tn.Kind == FFNInput && fs != nil:
							fs[tn.Layer] = slices.Clone(tn.Data)
						case tn.Kind == FFNOutput && fs != nil:
							fs[tn.Layer] = slices.Clone(tn.Data) // X: F after l_out
						case tn.Kind == BlockOutput:
							if x := fs[tn.Layer]; x != nil && r.FFNOutput != "" {
								for i := range x {
									x[i] = tn.Data[i] - x[i]
								}
							}
							out[tn.Layer] = slices.Clone(tn.Data)
						}
						return true
					}})
				if err != nil {
					t.Fatal(err)
				}
				defer ctx.Close()
				decodeAll(t, ctx, toks)
			}
			decode(CaptureNames{}, plainIn, nil)
			decode(CaptureNames{Input: r.Input, FFNInput: r.FFNInput, FFNOutput: r.FFNOutput}, in, f)
			scale := float32(1)
			if r.Input == "inp_scaled" {
				scale = float32(math.Sqrt(float64(d)))
			}
			want := slices.Clone(plainIn[0])
			for i := range want {
				want[i] *= scale
			}
			if len(in[0]) != n*d || maxDiff(in[0], want) > 1e-6*float64(scale) {
				t.Errorf("block-0 input %q: max diff %g from inp_embd × %g", r.Input, maxDiff(in[0], want), scale)
			}
			if len(f) != b.Count {
				t.Fatalf("F of %d of %d blocks", len(f), b.Count)
			}
			const blk = 4
			fb := f[blk]
			defer zeroBlocks(t, m, []string{"ffn_down.weight"}, blk)()
			decode(CaptureNames{}, plainIn, nil)
			tol := 0.0
			if r.FFNOutput != "" {
				tol = 1e-5 // F = l_out − X, rounded
			}
			if d := maxDiff(out[blk], fb); d > tol {
				t.Errorf("blk %d with ffn_down zero: output differs from the captured F by %g (tolerance %g)", blk, d, tol)
			}
		})
	}
}

// TestRowResume checks that cgo's check of the graph admits exactly the
// decodes of some blocks the table says are exact (arch.Model.Resume), and
// that they are: with a run of the row's period made identities, a
// decode of the other blocks gives the whole decode's logits bit for bit,
// from tokens and (ResumeAll) from the stream entering a block; a list
// that moves a block in the index-derived pattern is refused.
func TestRowResume(t *testing.T) {
	for _, a := range synth.Archs() {
		t.Run(a, func(t *testing.T) {
			m, b, toks := rowModel(t, a)
			// cgo checks the graph; a decode from the middle of a pattern
			// is refused per decode (the model's Resume leaves it out).
			tokens, all := m.CanDecodeLayers() == nil, m.CanResume() == nil
			wantAll := b.Resume == arch.ResumeAll || b.Period > 1 && b.Arch.Resume == arch.ResumeAll
			if tokens != (b.Resume >= arch.ResumeTokens) || all != wantAll || b.Period > 1 && b.Resume == arch.ResumeAll {
				t.Fatalf("cgo: tokens %v, embeddings %v; the table says %v (period %d)", tokens, all, b.Resume, b.Period)
			}
			n, d, p := len(toks), m.NEmbd(), b.Period
			const first = 2 // the run first … first+p−1
			defer zeroBlocks(t, m, []string{"attn_output.weight", "ffn_down.weight"}, seq(first + p)[first:]...)()
			ctx, rec := recordingContext(t, m, false)
			decodeAll(t, ctx, toks)
			whole, outs := allLogits(ctx, n), rec.outs
			var live []int
			for i := range b.Count {
				if i < first || i >= first+p {
					live = append(live, i)
				}
			}
			tb := NewBatch(n)
			defer tb.Close()
			for i, tok := range toks {
				tb.Add(tok, i, 0, true)
			}
			ctx.ClearMemory()
			err := ctx.DecodeLayers(tb, live)
			if !tokens {
				if err == nil {
					t.Error("DecodeLayers: no error where cgo's check refuses the graph")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(allLogits(ctx, n), whole) {
				t.Errorf("tokens through blocks %v: logits differ from the whole decode's", live)
			}
			if p > 1 {
				ctx.ClearMemory()
				if err := ctx.DecodeLayers(tb, slices.Delete(seq(b.Count), first, first+1)); err == nil {
					t.Error("a decode without one block of the pattern's run: no error")
				}
			}
			eb := NewEmbdBatch(n, d)
			defer eb.Close()
			for i := range n {
				eb.AddEmbd(outs[first-1][i*d:(i+1)*d], i, 0, true)
			}
			ctx.ClearMemory()
			err = ctx.DecodeLayers(eb, live[first:])
			if p > 1 && err == nil {
				t.Errorf("DecodeLayers of embeddings from blk %d, which moves to graph index 0 in the pattern: no error", first+p)
			}
			if !all || p > 1 {
				if err == nil {
					t.Error("DecodeLayers of embeddings: no error where the graph scales them again")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(allLogits(ctx, n), whole) {
				t.Errorf("the stream entering blk %d through blocks %v: logits differ from the whole decode's", first+p, live[first:])
			}
		})
	}
}
