package cgo

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// synthModel writes cfg to a temporary file and loads it.
func synthModel(t *testing.T, cfg synth.Config) *Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := synth.Write(path, cfg); err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(path, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// noByteFallback returns a tiny generated model whose vocabulary has no
// <0xNN> byte tokens.
func noByteFallback(t *testing.T) *Model {
	cfg := synth.Tiny()
	cfg.Blocks = 2
	cfg.NoByteFallback = true
	return synthModel(t, cfg)
}

// TestTokenizeWithoutByteFallback checks that text holding a character the
// vocabulary cannot encode gives an *EncodeError naming the character and
// its offset (llama.cpp throws std::out_of_range there, which would abort
// the process if it crossed cgo), and that the model keeps working.
func TestTokenizeWithoutByteFallback(t *testing.T) {
	m := noByteFallback(t)
	ascii := "Once upon a time, Tom (7) said: \"hi!\"\n\tThe end."
	toks, err := m.Tokenize(ascii, true, false)
	if err != nil {
		t.Fatalf("ASCII text: %v", err)
	}
	// SentencePiece adds a space before the text.
	if got, err := m.detokenize(toks); err != nil || strings.TrimPrefix(got, " ") != ascii {
		t.Fatalf("round trip = %q, %v; want %q", got, err, ascii)
	}
	for _, c := range []struct {
		text, char, desc string
		off              int
	}{
		{"The café is open.", "é", "U+00E9 'é'", 7},
		{"ok 😀 then é", "😀", "U+1F600 '😀'", 3},
		{"ab\xffcd", "\xff", "byte 0xFF (not UTF-8)", 2},
		{"bell\a and ü", "\a", "U+0007", 4}, // the first of two: a control character has no token either
	} {
		_, err := m.Tokenize(c.text, true, false)
		var ee *EncodeError
		if !errors.As(err, &ee) {
			t.Fatalf("%q: error %v, want an *EncodeError", c.text, err)
		}
		if ee.Char != c.char || ee.Offset != c.off || ee.Model != m.Path() {
			t.Errorf("%q: char %q at %d in %s, want %q at %d", c.text, ee.Char, ee.Offset, ee.Model, c.char, c.off)
		}
		msg := err.Error()
		for _, w := range []string{c.desc, "byte offset " + strconv.Itoa(c.off), "no byte fallback", m.Path()} {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: message %q lacks %q", c.text, msg, w)
			}
		}
		var ce *CppError
		if !errors.Is(err, ErrException) || !errors.As(err, &ce) || ce.Kind != "std::out_of_range" || ce.Call != "llama_tokenize" {
			t.Errorf("%q: %v does not wrap llama_tokenize's std::out_of_range (%+v)", c.text, err, ce)
		}
	}
	// Still usable after the exceptions: tokenize and decode.
	toks2, err := m.Tokenize(ascii, true, false)
	if err != nil || len(toks2) != len(toks) {
		t.Fatalf("after the errors: %d tokens, %v; want %d", len(toks2), err, len(toks))
	}
	ctx, err := NewContext(m, ContextParams{NCtx: 128, NBatch: 64, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	decodeAll(t, ctx, toks2)
	if l := ctx.Logits(len(toks2) - 1); len(l) != m.NVocab() {
		t.Fatalf("%d logits, want %d", len(l), m.NVocab())
	}
}

// TestTokenizeWithByteFallback checks that a vocabulary with byte tokens
// encodes the same non-ASCII text (as bytes) and decodes it back.
func TestTokenizeWithByteFallback(t *testing.T) {
	cfg := synth.Tiny()
	cfg.Blocks = 2
	m := synthModel(t, cfg)
	text := "The café 😀 is open."
	toks, err := m.Tokenize(text, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.detokenize(toks); err != nil || strings.TrimPrefix(got, " ") != text {
		t.Fatalf("round trip = %q, %v; want %q", got, err, text)
	}
}

// TestTokenOutOfRange checks that a token id outside the vocabulary is an
// error from detokenize (llama.cpp throws std::out_of_range), not an
// abort.
func TestTokenOutOfRange(t *testing.T) {
	m := noByteFallback(t)
	bad := int32(m.NVocab() + 7)
	if s, err := m.detokenize([]int32{m.BOS(), 300, bad}); !errors.Is(err, ErrException) || !strings.Contains(err.Error(), "std::out_of_range") {
		t.Fatalf("detokenize with token %d = %q, %v; want llama.cpp's std::out_of_range", bad, s, err)
	}
	if s, err := m.detokenize([]int32{300}); err != nil || s == "" {
		t.Fatalf("detokenize(300) = %q, %v", s, err)
	}
}
