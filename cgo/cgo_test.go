package cgo

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

func loadStories(t *testing.T) *Model {
	t.Helper()
	m, err := LoadModel(shared.Model(t, "stories260K.gguf"), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func argmax(v []float32) int32 {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return int32(best)
}

func TestModelFacts(t *testing.T) {
	m := loadStories(t)
	if m.NLayer() != 5 || m.NEmbd() != 64 || m.NHead() != 8 || m.NHeadKV() != 4 || m.NVocab() != 512 {
		t.Fatalf("layers %d embd %d heads %d/%d vocab %d", m.NLayer(), m.NEmbd(), m.NHead(), m.NHeadKV(), m.NVocab())
	}
	if arch, ok := m.Meta("general.architecture"); !ok || arch != "llama" {
		t.Fatalf("general.architecture = %q, %v", arch, ok)
	}
	if !m.AddBOS() || m.BOS() < 0 {
		t.Fatalf("add_bos %v bos %d", m.AddBOS(), m.BOS())
	}
}

// TestGenerateAndCapture tokenizes, decodes, generates greedily and checks
// that the capture hook sees every block output with the right shape.
func TestGenerateAndCapture(t *testing.T) {
	m := loadStories(t)
	toks, err := m.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) < 3 || toks[0] != m.BOS() {
		t.Fatalf("tokens %v (bos %d)", toks, m.BOS())
	}
	if got, err := m.detokenize(toks); err != nil || strings.TrimSpace(got) != "Once upon a time" {
		t.Fatalf("detokenize = %q, %v", got, err)
	}

	type seen struct{ rows, cols, n int }
	var captured []seen
	var layers []int
	finite := true
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, CaptureInput: true,
		Capture: func(tn Tensor) bool {
			captured = append(captured, seen{tn.Rows, tn.Cols, len(tn.Data)})
			layers = append(layers, tn.Layer)
			for _, v := range tn.Data {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					finite = false
				}
			}
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks)
	// One decode: inp_embd plus exactly block_count l_out tensors, each
	// n_tokens × n_embd.
	if len(captured) != 1+m.NLayer() {
		t.Fatalf("captured %d tensors (layers %v), want %d", len(captured), layers, 1+m.NLayer())
	}
	for i, c := range captured {
		if layers[i] != i-1 {
			t.Fatalf("tensor %d is layer %d, want %d (order %v)", i, layers[i], i-1, layers)
		}
		if c.rows != len(toks) || c.cols != m.NEmbd() || c.n != len(toks)*m.NEmbd() {
			t.Fatalf("layer %d: %d×%d (%d values), want %d×%d", layers[i], c.rows, c.cols, c.n, len(toks), m.NEmbd())
		}
	}
	if !finite {
		t.Fatal("captured a non-finite activation")
	}

	// Greedy generation of 20 tokens, one per decode.
	out := append([]int32(nil), toks...)
	next := argmax(ctx.Logits(len(toks) - 1))
	for range 20 {
		if next == m.EOS() {
			break
		}
		out = append(out, next)
		captured = captured[:0]
		b := NewBatch(1)
		b.Add(next, len(out)-1, 0, true)
		err := ctx.Decode(b)
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(captured) != 1+m.NLayer() || captured[len(captured)-1].rows != 1 {
			t.Fatalf("single-token decode captured %v", captured)
		}
		next = argmax(ctx.Logits(0))
	}
	text, err := m.detokenize(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated: %q", text)
	if len(out)-len(toks) < 10 {
		t.Fatalf("only %d tokens generated: %q", len(out)-len(toks), text)
	}
	// Readable English: mostly letters and spaces, and words of a small
	// common set appear.
	letters := 0
	for _, r := range text {
		if unicode.IsLetter(r) || r == ' ' || r == '.' || r == ',' || r == '\'' || r == '"' {
			letters++
		}
	}
	if float64(letters) < 0.95*float64(len([]rune(text))) {
		t.Fatalf("generated text is not readable: %q", text)
	}
	common := 0
	for _, w := range strings.Fields(strings.ToLower(text)) {
		switch strings.Trim(w, ".,\"'!") {
		case "the", "a", "was", "there", "girl", "boy", "little", "named", "she", "he", "lily", "day", "to", "and", "her", "his", "big", "time", "upon", "once":
			common++
		}
	}
	if common < 4 {
		t.Fatalf("generated text has too few common English words (%d): %q", common, text)
	}
}

// TestMultiSequenceCapture decodes two sequences in one batch and checks the
// rows arrive in batch order and that each sequence's hidden states equal
// those of decoding it alone.
func TestMultiSequenceCapture(t *testing.T) {
	m := loadStories(t)
	a, _ := m.Tokenize("The cat sat on the mat.", true, false)
	bt, _ := m.Tokenize("Tom went to the park with his dog.", true, false)
	run := func(seqs ...[]int32) [][]float32 {
		var last []float32
		ctx, err := NewContext(m, ContextParams{NCtx: 256, NBatch: 64, NSeqMax: len(seqs), Threads: 2,
			Capture: func(tn Tensor) bool {
				if tn.Layer == m.NLayer()-1 {
					last = append([]float32(nil), tn.Data...)
				}
				return true
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer ctx.Close()
		b := NewBatch(64)
		defer b.Close()
		for s, toks := range seqs {
			for i, tok := range toks {
				b.Add(tok, i, s, true)
			}
		}
		if err := ctx.Decode(b); err != nil {
			t.Fatal(err)
		}
		var out [][]float32
		off := 0
		for _, toks := range seqs {
			out = append(out, last[off*m.NEmbd():(off+len(toks))*m.NEmbd()])
			off += len(toks)
		}
		return out
	}
	both := run(a, bt)
	alone := [][]float32{run(a)[0], run(bt)[0]}
	for s := range 2 {
		for i := range both[s] {
			if d := math.Abs(float64(both[s][i] - alone[s][i])); d > 1e-3 {
				t.Fatalf("seq %d value %d: batched %g alone %g", s, i, both[s][i], alone[s][i])
			}
		}
	}
}

func TestDequantizeQuantizeRoundTrip(t *testing.T) {
	const (
		typeF32  = 0
		typeF16  = 1
		typeQ8_0 = 8
		typeQ4_K = 12
		typeBF16 = 30
	)
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, 4*256)
	for i := range src {
		src[i] = float32(rng.NormFloat64())
	}
	for _, tc := range []struct {
		typ int
		tol float64 // relative RMS error
	}{{typeF32, 0}, {typeF16, 1e-3}, {typeBF16, 1e-2}, {typeQ8_0, 1e-2}, {typeQ4_K, 0.12}} {
		t.Run(TypeName(tc.typ), func(t *testing.T) {
			buf := make([]byte, 4*RowSize(tc.typ, 256))
			n, err := Quantize(tc.typ, src, buf, 4, 256, nil)
			if err != nil || n != len(buf) {
				t.Fatalf("quantize: %d bytes, %v", n, err)
			}
			back := make([]float32, len(src))
			if err := Dequantize(tc.typ, buf, back); err != nil {
				t.Fatal(err)
			}
			var num, den float64
			for i := range src {
				d := float64(back[i] - src[i])
				num += d * d
				den += float64(src[i]) * float64(src[i])
			}
			if rel := math.Sqrt(num / den); rel > tc.tol {
				t.Fatalf("relative RMS error %g > %g", rel, tc.tol)
			}
		})
	}
	if err := Dequantize(typeQ4_K, make([]byte, 10), make([]float32, 256)); err == nil {
		t.Fatal("dequantize with a wrong byte count succeeded")
	}
	if err := Dequantize(4, nil, make([]float32, 32)); err == nil {
		t.Fatal("dequantize of removed type 4 succeeded")
	}
	if _, err := Quantize(16 /* IQ2_XXS */, src, make([]byte, 1<<16), 4, 256, nil); err == nil {
		t.Fatal("IQ2_XXS without an importance matrix was accepted")
	}
}

func rssKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.Atoi(f[1])
	return pages * os.Getpagesize() / 1024
}

// TestRepeatedLoadDoesNotLeak loads, decodes and frees the model many times;
// resident memory after warm-up must stay flat.
func TestRepeatedLoadDoesNotLeak(t *testing.T) {
	path := shared.Model(t, "stories260K.gguf")
	cycle := func() {
		m, err := LoadModel(path, ModelParams{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := NewContext(m, ContextParams{NCtx: 256, NBatch: 64, Threads: 1, Capture: func(Tensor) bool { return true }})
		if err != nil {
			t.Fatal(err)
		}
		b := NewBatch(64)
		toks, _ := m.Tokenize("Once upon a time there was a little girl.", true, false)
		for i, tok := range toks {
			b.Add(tok, i, 0, true)
		}
		if err := ctx.Decode(b); err != nil {
			t.Fatal(err)
		}
		b.Close()
		ctx.Close()
		m.Close()
		// Close is idempotent.
		ctx.Close()
		m.Close()
	}
	for range 20 {
		cycle()
	}
	runtime.GC()
	releaseFreedMemory()
	before := rssKiB(t)
	for range 60 {
		cycle()
	}
	runtime.GC()
	releaseFreedMemory()
	after := rssKiB(t)
	t.Logf("RSS before %d KiB, after 60 cycles %d KiB", before, after)
	// A leaked model or context here costs over 1 MiB per cycle.
	if after-before > 8*1024 {
		t.Fatalf("RSS grew by %d KiB over 60 load/decode/free cycles", after-before)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := LoadModel("/nonexistent/x.gguf", ModelParams{}); err == nil {
		t.Fatal("missing file loaded")
	}
	bad := t.TempDir() + "/bad.gguf"
	os.WriteFile(bad, []byte("not a gguf file at all"), 0o644)
	_, err := LoadModel(bad, ModelParams{})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file: %v", err)
	}
}

// TestSkipLogits checks that stopping the graph after the last block
// still hands over every block output, equal to a full decode, and that
// the decode after a stopped one is whole again.
func TestSkipLogits(t *testing.T) {
	m := loadStories(t)
	toks, _ := m.Tokenize("Once upon a time, there was a little girl named Lily.", true, false)
	run := func(skip bool) (layers []int, outs [][]float32, logits []float32) {
		ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2, SkipLogits: skip,
			Capture: func(tn Tensor) bool {
				layers = append(layers, tn.Layer)
				outs = append(outs, append([]float32(nil), tn.Data...))
				return true
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer ctx.Close()
		for range 2 { // the second decode reuses the graph after a stop
			layers, outs = nil, nil
			ctx.ClearMemory()
			decodeAll(t, ctx, toks)
		}
		return layers, outs, append([]float32(nil), ctx.Logits(len(toks)-1)...)
	}
	fullLayers, full, logits := run(false)
	skipLayers, skipped, _ := run(true)
	if !slices.Equal(fullLayers, skipLayers) || len(fullLayers) != m.NLayer() {
		t.Fatalf("layers %v with SkipLogits, %v without (want %d)", skipLayers, fullLayers, m.NLayer())
	}
	for l := range full {
		if !slices.Equal(full[l], skipped[l]) {
			t.Fatalf("block %d output differs with SkipLogits", l)
		}
	}
	if argmax(logits) < 0 {
		t.Fatal("no logits from the full decode")
	}
}

// decodeAll decodes toks as sequence 0, every token an output.
func decodeAll(t *testing.T, ctx *Context, toks []int32) {
	t.Helper()
	b := NewBatch(len(toks))
	defer b.Close()
	for i, tok := range toks {
		b.Add(tok, i, 0, true)
	}
	if err := ctx.Decode(b); err != nil {
		t.Fatal(err)
	}
}

// TestWeightGetSet reads a weight of a writable model back, changes it and
// restores it: Get returns what Set wrote, bit for bit, and a wrong size is
// an error, not a write past the buffer.
func TestWeightGetSet(t *testing.T) {
	m, err := LoadModel(shared.Model(t, "stories260K.gguf"), ModelParams{NoMmap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w, err := m.Weight("blk.2.ffn_down.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !w.Readable() {
		t.Fatalf("%s (F32 on the CPU) is not readable", w.Name)
	}
	orig := make([]byte, w.Bytes())
	if err := w.Get(orig); err != nil {
		t.Fatal(err)
	}
	if slices.Equal(orig, make([]byte, len(orig))) {
		t.Fatal("Get returned zeros for a trained weight")
	}
	edited := slices.Clone(orig)
	for i := range edited {
		edited[i] ^= byte(i)
	}
	if err := w.Set(edited); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(orig))
	if err := w.Get(got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, edited) {
		t.Fatal("Get after Set does not return what Set wrote")
	}
	if err := w.Set(orig); err != nil {
		t.Fatal(err)
	}
	if err := w.Get(got); err != nil || !slices.Equal(got, orig) {
		t.Fatalf("restore: %v, equal %v", err, slices.Equal(got, orig))
	}
	if err := w.Get(got[:10]); err == nil {
		t.Fatal("Get accepted a buffer of the wrong size")
	}
}
