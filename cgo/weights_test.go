package cgo

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// weightLogits decodes toks on a fresh context of m and returns every
// token's logits.
func weightLogits(t *testing.T, m *Model, toks []int32) []float32 {
	t.Helper()
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks)
	return allLogits(ctx, len(toks))
}

// fileBytes returns tensor name's bytes as the GGUF file at path holds them.
func fileBytes(t *testing.T, path, name string) []byte {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	i, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("%s: no tensor %s", path, name)
	}
	b := make([]byte, f.Tensors[i].Size())
	if _, err := f.TensorReader(i).ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// loadBoth loads path memory-mapped and read into memory (NoMmap); the
// test's cleanup closes both.
func loadBoth(t *testing.T, path string) (mapped, anon *Model) {
	t.Helper()
	for _, m := range []struct {
		p  **Model
		mp ModelParams
	}{{&mapped, ModelParams{}}, {&anon, ModelParams{NoMmap: true}}} {
		l, err := LoadModel(path, m.mp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		*m.p = l
	}
	return mapped, anon
}

// fileSum returns the SHA-256 of the file at path.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// halved returns F32 data with every value halved.
func halved(data []byte) []byte {
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))
		binary.LittleEndian.PutUint32(out[i:], math.Float32bits(v/2))
	}
	return out
}

// TestWeightSetMapped edits a weight of a memory-mapped model: the decode
// computes with the edit exactly as a model read into memory does (the
// same logits, bit for bit), the edit takes a private buffer of the
// weight's size, Get reads it back, and setting the file's bytes again
// frees the buffer and gives the original logits back; the file stays as
// it was. Closing a model with an edited weight frees its buffer (the
// count goes to 0).
func TestWeightSetMapped(t *testing.T) {
	path := shared.Model(t, "stories260K.gguf")
	before := fileSum(t, path)
	defer func() {
		if fileSum(t, path) != before {
			t.Error("editing the mapped model changed the file")
		}
	}()
	mapped, anon := loadBoth(t, path)
	toks, err := mapped.Tokenize("Once upon a time there was a little dog", true, false)
	if err != nil {
		t.Fatal(err)
	}
	const name = "blk.2.ffn_down.weight"
	orig := fileBytes(t, path, name)
	base := weightLogits(t, mapped, toks)
	if anonBase := weightLogits(t, anon, toks); !slices.Equal(base, anonBase) {
		t.Fatal("mapped and in-memory models decode differently before any edit")
	}

	w, err := mapped.Weight(name)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Readable() {
		t.Fatalf("%s of the mapping is not readable", name)
	}
	got := make([]byte, w.Bytes())
	if err := w.Get(got); err != nil || !slices.Equal(got, orig) {
		t.Fatalf("Get of a mapped weight: %v, equal to the file %v", err, slices.Equal(got, orig))
	}
	if err := w.Set(orig); err != nil || mapped.PrivateBytes() != 0 {
		t.Fatalf("Set of the file's own bytes: %v, %d private bytes (want 0)", err, mapped.PrivateBytes())
	}

	edit := halved(orig)
	if err := w.Set(edit); err != nil {
		t.Fatal(err)
	}
	if mapped.PrivateBytes() != int64(len(edit)) {
		t.Fatalf("after one edit: %d private bytes, want %d", mapped.PrivateBytes(), len(edit))
	}
	aw, err := anon.Weight(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := aw.Set(edit); err != nil {
		t.Fatal(err)
	}
	if anon.PrivateBytes() != 0 {
		t.Fatalf("an in-memory model counts %d private bytes", anon.PrivateBytes())
	}
	edited := weightLogits(t, mapped, toks)
	if slices.Equal(edited, base) {
		t.Fatal("the decode after Set ignored the edit")
	}
	if !slices.Equal(edited, weightLogits(t, anon, toks)) {
		t.Fatal("the mapped and in-memory models decode the same edit differently")
	}
	if err := w.Get(got); err != nil || !slices.Equal(got, edit) {
		t.Fatalf("Get after Set: %v, equal to the edit %v", err, slices.Equal(got, edit))
	}
	// A second edit goes into the same buffer.
	if err := w.Set(halved(edit)); err != nil || mapped.PrivateBytes() != int64(len(edit)) {
		t.Fatalf("second edit: %v, %d private bytes", err, mapped.PrivateBytes())
	}
	if err := w.Set(orig); err != nil {
		t.Fatal(err)
	}
	if mapped.PrivateBytes() != 0 {
		t.Fatalf("after restoring the file's bytes: %d private bytes, want 0", mapped.PrivateBytes())
	}
	if !slices.Equal(weightLogits(t, mapped, toks), base) {
		t.Fatal("the decode after the restore differs from the original")
	}
	if err := w.Set(edit[:8]); err == nil {
		t.Fatal("Set accepted data of the wrong size")
	}

	// Closing with an edited weight frees its buffer.
	if err := w.Set(edit); err != nil {
		t.Fatal(err)
	}
	mapped.Close()
	if mapped.PrivateBytes() != 0 {
		t.Fatalf("closed model keeps %d private bytes", mapped.PrivateBytes())
	}
	if err := w.Set(edit); err != ErrClosed {
		t.Fatalf("Set on a closed model: %v, want ErrClosed", err)
	}
}

// TestWeightSetQuantized edits a Q4_0 weight, the type llama.cpp would
// keep in a repacking CPU buffer (CPU_REPACK, with AVX2) even when the
// file is mapped, had the build GGML_USE_CPU_REPACK: either way the mapped
// and in-memory models decode the edit the same, and the file's bytes put
// back give the original logits.
func TestWeightSetQuantized(t *testing.T) {
	dir := t.TempDir()
	src, path := filepath.Join(dir, "tiny.gguf"), filepath.Join(dir, "q4_0.gguf")
	if err := synth.Write(src, synth.Tiny()); err != nil {
		t.Fatal(err)
	}
	const mostlyQ4_0 = 2
	if err := QuantizeFile(src, path, QuantizeParams{FileType: mostlyQ4_0, OutputType: -1, EmbeddingType: -1}); err != nil {
		t.Fatal(err)
	}
	mapped, anon := loadBoth(t, path)
	toks := []int32{1, 300, 301, 302, 303, 304, 305, 306}
	const name = "blk.1.attn_q.weight"
	w, err := mapped.Weight(name)
	if err != nil {
		t.Fatal(err)
	}
	if w.Type != 2 {
		t.Fatalf("%s is type %d, not Q4_0", name, w.Type)
	}
	t.Logf("%s: buffer %s", name, w.bufferName())
	base := weightLogits(t, mapped, toks)
	zeros := make([]byte, w.Bytes())
	for _, m := range []*Model{mapped, anon} {
		mw, err := m.Weight(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := mw.Set(zeros); err != nil {
			t.Fatal(err)
		}
	}
	edited := weightLogits(t, mapped, toks)
	if slices.Equal(edited, base) {
		t.Fatal("the decode after Set ignored the edit")
	}
	if !slices.Equal(edited, weightLogits(t, anon, toks)) {
		t.Fatal("the mapped and in-memory models decode the same edit differently")
	}
	if err := w.Set(fileBytes(t, path, name)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(weightLogits(t, mapped, toks), base) {
		t.Fatal("the decode after the restore differs from the original")
	}
}
