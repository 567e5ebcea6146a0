package cgo

import (
	"fmt"
	"math"
	"testing"
)

// TestMatMulInputs decodes N tokens with the matmul capture on (and the
// block-output capture too) and checks that every weight multiplication of
// every block and output.weight deliver N rows of the weight's ne0.
func TestMatMulInputs(t *testing.T) {
	m := loadStories(t)
	toks, err := m.Tokenize("Once upon a time there was a little dog", true, false)
	if err != nil {
		t.Fatal(err)
	}
	n := len(toks)
	type shape struct{ cols, rows, calls int }
	got := map[string]*shape{}
	finite := true
	var blockOuts int
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2,
		Capture: func(tn Tensor) bool { blockOuts++; return true },
		MatMulInputs: func(w string, cols, rows int, data []float32) bool {
			if len(data) != cols*rows {
				t.Errorf("%s: %d values for %d×%d", w, len(data), rows, cols)
			}
			for _, v := range data {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					finite = false
				}
			}
			s := got[w]
			if s == nil {
				s = &shape{cols: cols, rows: rows}
				got[w] = s
			}
			if s.cols != cols || s.rows != rows {
				t.Errorf("%s: %d×%d then %d×%d", w, s.rows, s.cols, rows, cols)
			}
			s.calls++
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks)
	if blockOuts != m.NLayer() {
		t.Fatalf("block-output capture saw %d tensors, want %d", blockOuts, m.NLayer())
	}
	if !finite {
		t.Fatal("non-finite activation")
	}
	embd := m.NEmbd()
	headDim := embd / m.NHead()
	want := map[string]int{"output.weight": embd}
	for i := range m.NLayer() {
		for _, w := range []string{"attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"} {
			want[fmt.Sprintf("blk.%d.%s.weight", i, w)] = embd
		}
		want[fmt.Sprintf("blk.%d.attn_output.weight", i)] = headDim * m.NHead()
		want[fmt.Sprintf("blk.%d.ffn_down.weight", i)] = -1 // n_ff, checked below
	}
	ff := -1
	for w, cols := range want {
		s := got[w]
		if s == nil {
			t.Errorf("no input for %s", w)
			continue
		}
		if cols < 0 {
			if ff < 0 {
				ff = s.cols
			}
			cols = ff
		}
		if s.cols != cols || s.rows != n || s.calls != 1 {
			t.Errorf("%s: %d×%d in %d calls, want %d×%d once", w, s.rows, s.cols, s.calls, n, cols)
		}
	}
	if ff <= embd {
		t.Errorf("ffn_down input has %d columns, want n_ff > n_embd %d", ff, embd)
	}
	if len(got) != len(want) {
		t.Errorf("captured %d weights, want %d: %v", len(got), len(want), keys(got))
	}

}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
