package cgo

import (
	"slices"
	"testing"
)

// TestPerSeqKVAndPlainAttention decodes three equal-length sequences in
// one batch, capturing every block output: with a KV cache per sequence
// (PerSeqKV) the captured rows and the logits are those of one cache for
// all, bit for bit, in batch order; without FlashAttention (plain attention) they are the same
// values rounded differently (within 1e-4 of the largest), not the same
// bits.
func TestPerSeqKVAndAttention(t *testing.T) {
	m, toks := storyModel(t, ModelParams{})
	const seqs, n = 3, 16
	if len(toks) < seqs*n/2 {
		t.Fatalf("only %d tokens", len(toks))
	}
	type result struct {
		outs   map[int][]float32
		logits []float32
	}
	run := func(cp ContextParams) result {
		r := result{outs: map[int][]float32{}}
		cp.NCtx, cp.NBatch, cp.NSeqMax, cp.Threads = seqs*n, seqs*n, seqs, 2
		cp.Capture = func(tn Tensor) bool {
			if tn.Kind == BlockOutput {
				r.outs[tn.Layer] = slices.Clone(tn.Data)
			}
			return true
		}
		ctx, err := NewContext(m, cp)
		if err != nil {
			t.Fatal(err)
		}
		defer ctx.Close()
		b := NewBatch(seqs * n)
		defer b.Close()
		for s := range seqs {
			for j := range n {
				b.Add(toks[(s*5+j)%len(toks)], j, s, true)
			}
		}
		if err := ctx.Decode(b); err != nil {
			t.Fatal(err)
		}
		r.logits = allLogits(ctx, seqs*n)
		return r
	}
	one := run(ContextParams{FlashAttention: true})
	if len(one.outs) != m.NLayer() || len(one.logits) != seqs*n*m.NVocab() {
		t.Fatalf("one cache: %d block outputs, %d logits", len(one.outs), len(one.logits))
	}
	same := func(name string, r result, exact bool) {
		t.Helper()
		eq := func(a, b []float32) bool {
			if exact {
				return slices.Equal(a, b)
			}
			return close32(a, b, 2e-3)
		}
		for l, want := range one.outs {
			if !eq(r.outs[l], want) {
				t.Errorf("%s: block %d output differs from one cache's", name, l)
			}
		}
		if !eq(r.logits, one.logits) {
			t.Errorf("%s: logits differ from one cache's", name)
		}
	}
	same("a cache per sequence", run(ContextParams{PerSeqKV: true, FlashAttention: true}), true)
	// Each sequence has NCtx/NSeqMax cells of its own (512/2): one longer
	// sequence does not fit, as it does in one cache for all.
	for _, per := range []bool{false, true} {
		ctx, err := NewContext(m, ContextParams{NCtx: 512, NBatch: 300, NSeqMax: 2, Threads: 2, PerSeqKV: per})
		if err != nil {
			t.Fatal(err)
		}
		b := NewBatch(300)
		for j := range 300 {
			b.Add(toks[j%len(toks)], j, 0, j == 299)
		}
		err = ctx.Decode(b)
		b.Close()
		ctx.Close()
		if (err != nil) != per {
			t.Errorf("PerSeqKV %v: a sequence of 300 tokens in 512 cells for 2 sequences: %v", per, err)
		}
	}
	plain := run(ContextParams{PerSeqKV: true})
	same("plain attention", plain, false)
	if slices.Equal(plain.logits, one.logits) {
		t.Error("plain attention gave flash attention's bits: is it on?")
	}
	same("plain attention, one cache", run(ContextParams{}), false)
}
