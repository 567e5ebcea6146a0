package calib

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func load(t *testing.T, name string) *cgo.Model {
	m, err := cgo.LoadModel(shared.Model(t, name), cgo.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func trainTexts(t *testing.T) []string {
	b, err := os.ReadFile(shared.Path(t, "data/tinystories-train.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The first 400 paragraphs are plenty.
	p := strings.Split(string(b), "\n\n")
	return p[:min(400, len(p))]
}

// TestRunShapesAndStats checks shapes, that batching several sequences per
// decode gives the same numbers as one per decode, and a hand check of one
// sample's mean and last token against a direct capture.
func TestRunShapesAndStats(t *testing.T) {
	m := load(t, "stories260K.gguf")
	chunks, err := Tokens(m, trainTexts(t), 12, 64, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if len(c) != 64 || c[0] != m.BOS() {
			t.Fatalf("chunk of %d tokens starting %d", len(c), c[0])
		}
	}
	one, err := Run(m, chunks, Options{Threads: 2, BatchTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	many, err := Run(m, chunks, Options{Threads: 2, BatchTokens: 512})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Mean) != 6 || len(one.Mean[0]) != 12*64 || len(one.CosSum) != 5 {
		t.Fatalf("shapes: %d layers, %d values, %d blocks", len(one.Mean), len(one.Mean[0]), len(one.CosSum))
	}
	for l := range one.Mean {
		for i := range one.Mean[l] {
			if d := math.Abs(float64(one.Mean[l][i] - many.Mean[l][i])); d > 1e-3 {
				t.Fatalf("layer %d value %d: %g (1 seq/decode) vs %g (8 seqs/decode)", l, i, one.Mean[l][i], many.Mean[l][i])
			}
			if d := math.Abs(float64(one.Last[l][i] - many.Last[l][i])); d > 1e-3 {
				t.Fatalf("last layer %d value %d differs", l, i)
			}
		}
	}
	bi := one.BlockInfluence()
	for i, v := range bi {
		if !(v > 0 && v < 1) {
			t.Fatalf("BI[%d] = %g out of (0,1)", i, v)
		}
		if math.Abs(v-many.BlockInfluence()[i]) > 1e-4 {
			t.Fatalf("BI[%d] depends on batching", i)
		}
	}

	// Independent check of sample 3 at the last layer with a direct capture
	// (on the calibration's graph: plain attention).
	var rows []float32
	ctx, err := cgo.NewContext(m, cgo.ContextParams{NCtx: 64, NBatch: 64, Threads: 2, Capture: func(tn cgo.Tensor) bool {
		if tn.Layer == m.NLayer()-1 {
			rows = append([]float32(nil), tn.Data...)
		}
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	b := cgo.NewBatch(64)
	defer b.Close()
	for j, tok := range chunks[3] {
		b.Add(tok, j, 0, true)
	}
	if err := ctx.Decode(b); err != nil {
		t.Fatal(err)
	}
	d := m.NEmbd()
	for k := range d {
		var s float64
		for j := 1; j < 64; j++ {
			s += float64(rows[j*d+k])
		}
		if got := one.Mean[5][3*d+k]; math.Abs(float64(got)-s/63) > 1e-4 {
			t.Fatalf("mean[5][3][%d] = %g, direct %g", k, got, s/63)
		}
		if got := one.Last[5][3*d+k]; math.Abs(float64(got-rows[63*d+k])) > 1e-4 {
			t.Fatalf("last[5][3][%d] = %g, direct %g", k, got, rows[63*d+k])
		}
	}
}

func TestTooShort(t *testing.T) {
	m := load(t, "stories260K.gguf")
	_, err := Tokens(m, []string{"Once upon a time."}, 4, 64, 1)
	ts, ok := err.(*TooShortError)
	if !ok {
		t.Fatalf("error %v is not a TooShortError", err)
	}
	if ts.Need != 4*63 || ts.Have <= 0 || ts.Have >= ts.Need || !strings.Contains(err.Error(), "need 252") {
		t.Fatalf("%+v: %v", ts, err)
	}
}

func TestSeedDeterminism(t *testing.T) {
	m := load(t, "stories260K.gguf")
	texts := trainTexts(t)
	a, _ := Tokens(m, texts, 4, 32, 1)
	b, _ := Tokens(m, texts, 4, 32, 1)
	c, _ := Tokens(m, texts, 4, 32, 2)
	same := func(x, y [][]int32) bool {
		for i := range x {
			for j := range x[i] {
				if x[i][j] != y[i][j] {
					return false
				}
			}
		}
		return true
	}
	if !same(a, b) || same(a, c) {
		t.Fatal("chunks are not a deterministic function of the seed")
	}
}
