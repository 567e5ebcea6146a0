// Package corpus provides calibration text: an embedded default set written
// for this project, loading of user-supplied files (JSONL or plain text), and
// deterministic selection and splitting of samples.
//
// Tokenization and packing into fixed-length chunks happen elsewhere; this
// package only deals with whole text samples. When the caller finds after
// tokenizing that there is not enough text, it reports a *TooShortError.
package corpus

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

// Sample is one calibration text.
type Sample struct {
	Text string // the text itself, never empty or whitespace-only
	Kind string // genre label such as "story" or "code"; "" when unknown
}

// DefaultName names the embedded calibration set in messages, for example as
// TooShortError.Path when the caller used Default.
const DefaultName = "built-in calibration set"

//go:embed default.jsonl
var defaultJSONL []byte

var parseDefault = sync.OnceValue(func() []Sample {
	s, err := parse("default.jsonl", defaultJSONL)
	if err != nil {
		panic("corpus: embedded set is invalid: " + err.Error())
	}
	return s
})

// Default returns the embedded calibration set: a few hundred samples of
// 60–250 words each, written for this project, covering children's stories
// (about a third of the set, matching the register of small test models),
// dialogue, encyclopedic prose, instructions, commented source code, worked
// arithmetic, markdown tables and lists, letters, news and poems. Each Sample
// carries its genre in Kind. The returned slice is a fresh copy; callers may
// modify it.
func Default() []Sample {
	return append([]Sample(nil), parseDefault()...)
}

// Load reads calibration samples from the file at path.
//
// The format is detected from the content. If the first non-empty line is a
// JSON object, the file is JSONL: every non-empty line must be a JSON object
// with a string "text" field and may have a string "kind" field; a bad line
// is reported as "path:line: problem". Lines whose text is blank are skipped.
// Otherwise the file is plain text: samples are separated by one or more
// blank lines, CRLF line ends are accepted, each sample is trimmed of
// surrounding whitespace and has an empty Kind.
//
// A file without any sample is an error, as is one that cannot be read or
// is not text (see CheckText).
func Load(path string) ([]Sample, error) {
	data, err := ReadText(path)
	if err != nil {
		return nil, err
	}
	return parse(path, []byte(data))
}

// ReadText reads a text file: it fails, naming the file, when the file
// cannot be read or is not text (see CheckText).
func ReadText(path string) (string, error) {
	data, err := os.ReadFile(path)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "", fmt.Errorf("%s: %w", path, pe.Err) // once, not "read X: open X: …"
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if err := CheckText(path, data); err != nil {
		return "", err
	}
	return string(data), nil
}

// CheckText reports, naming path and the byte offset, data that is not
// text: a GGUF model (by its magic "GGUF"), a NUL byte or invalid UTF-8.
func CheckText(path string, data []byte) error {
	if bytes.HasPrefix(data, []byte("GGUF")) {
		return fmt.Errorf("%s: is a GGUF model, not text", path)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return fmt.Errorf("%s: not text: NUL byte at byte offset %d", path, i)
	}
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, n := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return fmt.Errorf("%s: not text: invalid UTF-8 at byte offset %d", path, off)
	}
	return nil
}

// parse decodes data, naming it path in errors.
func parse(path string, data []byte) ([]Sample, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // UTF-8 byte order mark
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	var (
		out []Sample
		err error
	)
	if isJSONL(lines) {
		out, err = parseJSONL(path, lines)
	} else {
		out = parsePlain(lines)
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no text samples", path)
	}
	return out, nil
}

// isJSONL reports whether the first non-blank line is a JSON object.
func isJSONL(lines []string) bool {
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		var m map[string]json.RawMessage
		return strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &m) == nil
	}
	return false
}

func parseJSONL(path string, lines []string) ([]Sample, error) {
	var out []Sample
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", path, i+1, fmt.Sprintf(format, a...))
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil || m == nil {
			return nil, bad("not a JSON object")
		}
		raw, ok := m["text"]
		if !ok {
			return nil, bad("missing %q field", "text")
		}
		var s Sample
		if err := json.Unmarshal(raw, &s.Text); err != nil || bytes.Equal(raw, []byte("null")) {
			return nil, bad("%q field is not a string", "text")
		}
		if raw, ok := m["kind"]; ok && !bytes.Equal(raw, []byte("null")) {
			if err := json.Unmarshal(raw, &s.Kind); err != nil {
				return nil, bad("%q field is not a string", "kind")
			}
		}
		if strings.TrimSpace(s.Text) == "" {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func parsePlain(lines []string) []Sample {
	var (
		out []Sample
		cur []string
	)
	flush := func() {
		if t := strings.TrimSpace(strings.Join(cur, "\n")); t != "" {
			out = append(out, Sample{Text: t})
		}
		cur = cur[:0]
	}
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return out
}

// Seed streams, so that Select and Split with the same seed do not draw the
// same permutation.
const (
	selectStream = 0x6d6b612d73656c31 // "mka-sel1"
	splitStream  = 0x6d6b612d73706c31 // "mka-spl1"
)

// shuffled returns a copy of samples in an order determined by seed and stream.
func shuffled(samples []Sample, seed, stream uint64) []Sample {
	out := append([]Sample(nil), samples...)
	r := rand.New(rand.NewPCG(seed, stream))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Select returns n samples chosen deterministically by seed: samples is
// shuffled with a math/rand/v2 PCG generator seeded with seed and the first n
// are taken. If n >= len(samples), all samples are returned in shuffled
// order; if n <= 0, none. The same input, n and seed always give the same
// result, and the input slice is not modified.
func Select(samples []Sample, n int, seed uint64) []Sample {
	if n <= 0 || len(samples) == 0 {
		return nil
	}
	out := shuffled(samples, seed, selectStream)
	if n < len(out) {
		out = out[:n:n]
	}
	return out
}

// Split divides samples deterministically into a calibration part and a
// held-back part, so that a search over merge settings can be scored on text
// it did not calibrate on. About heldBack·len(samples) samples (rounded) are
// held back, chosen by a PCG generator seeded with seed; both parts are in
// that shuffled order and together hold every sample exactly once.
//
// With heldBack > 0 and at least two samples, each part gets at least one
// sample. With heldBack <= 0 (or NaN) or fewer than two samples, nothing is
// held back. The input slice is not modified.
func Split(samples []Sample, heldBack float64, seed uint64) (calib, held []Sample) {
	n := len(samples)
	if n < 2 || !(heldBack > 0) {
		return append([]Sample(nil), samples...), nil
	}
	k := int(math.Round(math.Min(heldBack, 1) * float64(n)))
	k = max(1, min(k, n-1))
	all := shuffled(samples, seed, splitStream)
	return all[: n-k : n-k], all[n-k:]
}

// TooShortError reports that the calibration text, once tokenized, does not
// provide enough material. The caller fills it in after tokenizing:
//
//	&TooShortError{Path: "calib.txt", Have: 12, Need: 128,
//		Unit: "samples of at least 64 tokens"}
//
// reads "calib.txt: too little text: 12 samples of at least 64 tokens, need
// 128 (use --samples 12 or more text)".
type TooShortError struct {
	Path string // file the text came from; DefaultName for the embedded set
	Have int    // how many usable units the text provides
	Need int    // how many were asked for
	Unit string // what is counted, e.g. "samples of at least 64 tokens"; "samples" if empty
}

// Error implements error.
func (e *TooShortError) Error() string {
	path := e.Path
	if path == "" {
		path = "calibration text"
	}
	unit := e.Unit
	if unit == "" {
		unit = "samples"
	}
	hint := "(add more text)"
	if e.Have > 0 {
		hint = fmt.Sprintf("(use --samples %d or more text)", e.Have)
	}
	return fmt.Sprintf("%s: too little text: %d %s, need %d %s", path, e.Have, unit, e.Need, hint)
}

// IsTooShort reports whether err is or wraps a *TooShortError.
func IsTooShort(err error) bool {
	var t *TooShortError
	return errors.As(err, &t)
}

// Texts returns the samples' texts.
func Texts(s []Sample) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].Text
	}
	return out
}
