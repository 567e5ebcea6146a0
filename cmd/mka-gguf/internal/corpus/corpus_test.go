package corpus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var kinds = []string{"story", "dialogue", "fact", "instructions", "code", "math", "table", "letter", "news", "poem"}

func TestDefaultSize(t *testing.T) {
	d := Default()
	if len(d) < 300 {
		t.Fatalf("default set has %d samples, want >= 300", len(d))
	}
	per := map[string]int{}
	for _, s := range d {
		per[s.Kind]++
	}
	for _, k := range kinds {
		if per[k] < 15 {
			t.Errorf("kind %q has %d samples, want >= 15", k, per[k])
		}
		delete(per, k)
	}
	if len(per) != 0 {
		t.Errorf("unexpected kinds: %v", per)
	}
	if n := countKind(d, "story"); n < 100 {
		t.Errorf("%d children's stories, want >= 100", n)
	}
}

func countKind(s []Sample, kind string) int {
	n := 0
	for _, x := range s {
		if x.Kind == kind {
			n++
		}
	}
	return n
}

func TestDefaultLengths(t *testing.T) {
	for i, s := range Default() {
		if n := len(strings.Fields(s.Text)); n < 60 || n > 250 {
			t.Errorf("sample %d (%s) has %d words, want 60..250: %.60q", i+1, s.Kind, n, s.Text)
		}
		if s.Text != strings.TrimSpace(s.Text) {
			t.Errorf("sample %d has surrounding whitespace", i+1)
		}
	}
}

func TestDefaultNoDuplicates(t *testing.T) {
	const span = 12
	texts := map[string]int{}
	grams := map[string]int{}
	for i, s := range Default() {
		if j, ok := texts[s.Text]; ok {
			t.Errorf("samples %d and %d are identical", j+1, i+1)
		}
		texts[s.Text] = i
		w := strings.Fields(strings.ToLower(s.Text))
		for k := 0; k+span <= len(w); k++ {
			g := strings.Join(w[k:k+span], " ")
			if j, ok := grams[g]; ok && j != i {
				t.Errorf("samples %d and %d share %d words: %q", j+1, i+1, span, g)
			}
			grams[g] = i
		}
	}
}

func TestDefaultIsCopy(t *testing.T) {
	a := Default()
	a[0].Text = "changed"
	if Default()[0].Text == "changed" {
		t.Fatal("Default returned shared storage")
	}
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func texts(s []Sample) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Text)
	}
	return out
}

func TestLoadPlain(t *testing.T) {
	p := write(t, "calib.txt", "\n\n  First sample,\nsecond line.  \n\n\n \t\nSecond one.\n    indented line\n\nThird\n")
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"First sample,\nsecond line.", "Second one.\n    indented line", "Third"}
	if !reflect.DeepEqual(texts(got), want) {
		t.Fatalf("got %q, want %q", texts(got), want)
	}
	for _, s := range got {
		if s.Kind != "" {
			t.Errorf("plain text sample has kind %q", s.Kind)
		}
	}
}

func TestLoadCRLF(t *testing.T) {
	p := write(t, "calib.txt", "\ufeffOne\r\ntwo\r\n\r\n\r\nThree\r\n")
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"One\ntwo", "Three"}
	if !reflect.DeepEqual(texts(got), want) {
		t.Fatalf("got %q, want %q", texts(got), want)
	}
}

func TestLoadPlainStartingWithBrace(t *testing.T) {
	// Code that starts with "{" is not JSONL unless the line is a JSON object.
	p := write(t, "code.txt", "{ int x = 1;\n}\n\nnext")
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d samples, want 2: %q", len(got), texts(got))
	}
}

func TestLoadJSONL(t *testing.T) {
	p := write(t, "calib.jsonl", `{"text":"alpha beta","kind":"story"}`+"\r\n\n"+
		`{"text":"line one\nline two","extra":3}`+"\n"+
		`{"text":"   ","kind":"x"}`+"\n"+
		`{"text":"gamma","kind":null}`+"\n")
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{{"alpha beta", "story"}, {"line one\nline two", ""}, {"gamma", ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLoadJSONLBadLine(t *testing.T) {
	ok := `{"text":"fine"}` + "\n"
	cases := []struct{ line, want string }{
		{`{"kind":"story"}`, `:3: missing "text" field`},
		{`{"text":5}`, `:3: "text" field is not a string`},
		{`{"text":null}`, `:3: "text" field is not a string`},
		{`{"text":"a","kind":7}`, `:3: "kind" field is not a string`},
		{`just words`, `:3: not a JSON object`},
		{`["text"]`, `:3: not a JSON object`},
		{`{"text":"unterminated`, `:3: not a JSON object`},
	}
	for _, c := range cases {
		p := write(t, "calib.jsonl", ok+"\n"+c.line+"\n"+ok)
		_, err := Load(p)
		if err == nil {
			t.Errorf("%s: no error", c.line)
			continue
		}
		if want := p + c.want; err.Error() != want {
			t.Errorf("%s: error %q, want %q", c.line, err, want)
		}
	}
}

func TestLoadEmpty(t *testing.T) {
	for _, content := range []string{"", "\n\n", "  \r\n\t\n ", "\ufeff"} {
		p := write(t, "calib.txt", content)
		_, err := Load(p)
		if err == nil || err.Error() != p+": no text samples" {
			t.Errorf("%q: error %v, want %q", content, err, p+": no text samples")
		}
	}
	p := write(t, "calib.jsonl", `{"text":""}`+"\n"+`{"text":" "}`+"\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "no text samples") {
		t.Errorf("blank JSONL: error %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.txt")
	_, err := Load(p)
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.HasPrefix(err.Error(), p+": ") || strings.Count(err.Error(), p) != 1 || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %q does not name the path once or wrap ErrNotExist", err)
	}
}

func mkSamples(n int) []Sample {
	s := make([]Sample, n)
	for i := range s {
		s[i] = Sample{Text: fmt.Sprint("sample ", i)}
	}
	return s
}

func TestSelect(t *testing.T) {
	in := mkSamples(50)
	orig := append([]Sample(nil), in...)
	a := Select(in, 10, 1)
	b := Select(in, 10, 1)
	c := Select(in, 10, 2)
	if len(a) != 10 || len(c) != 10 {
		t.Fatalf("lengths %d, %d, want 10", len(a), len(c))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different selections")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds gave the same selection")
	}
	if !reflect.DeepEqual(in, orig) {
		t.Fatal("Select modified its input")
	}
	seen := map[string]bool{}
	for _, s := range a {
		if seen[s.Text] {
			t.Fatalf("duplicate %q", s.Text)
		}
		seen[s.Text] = true
	}
	// A larger n takes the same shuffle further.
	if d := Select(in, 20, 1); !reflect.DeepEqual(d[:10], a) {
		t.Fatal("Select(20) does not extend Select(10) for the same seed")
	}

	all := Select(in, 500, 3)
	if len(all) != len(in) {
		t.Fatalf("n > len: got %d, want %d", len(all), len(in))
	}
	if reflect.DeepEqual(all, in) {
		t.Fatal("n > len: not shuffled")
	}
	seen = map[string]bool{}
	for _, s := range all {
		seen[s.Text] = true
	}
	if len(seen) != len(in) {
		t.Fatalf("n > len: %d distinct, want %d", len(seen), len(in))
	}
	if got := Select(in, 0, 1); len(got) != 0 {
		t.Fatalf("n = 0: got %d samples", len(got))
	}
	if got := Select(nil, 5, 1); len(got) != 0 {
		t.Fatalf("empty input: got %d samples", len(got))
	}
}

func TestSplit(t *testing.T) {
	in := mkSamples(40)
	calib, held := Split(in, 0.25, 7)
	if len(calib) != 30 || len(held) != 10 {
		t.Fatalf("sizes %d/%d, want 30/10", len(calib), len(held))
	}
	c2, h2 := Split(in, 0.25, 7)
	if !reflect.DeepEqual(calib, c2) || !reflect.DeepEqual(held, h2) {
		t.Fatal("same seed gave different splits")
	}
	if _, h3 := Split(in, 0.25, 8); reflect.DeepEqual(held, h3) {
		t.Fatal("different seeds gave the same held-back part")
	}
	seen := map[string]int{}
	for _, s := range calib {
		seen[s.Text]++
	}
	for _, s := range held {
		if seen[s.Text] != 0 {
			t.Fatalf("%q is in both parts", s.Text)
		}
		seen[s.Text]++
	}
	if len(seen) != len(in) {
		t.Fatalf("parts cover %d samples, want %d", len(seen), len(in))
	}

	for _, c := range []struct {
		n          int
		frac       float64
		calib, hld int
	}{
		{2, 0.01, 1, 1},
		{2, 0.99, 1, 1},
		{3, 0.1, 2, 1},
		{10, 1, 1, 9},
		{10, 5, 1, 9},
		{10, 0.5, 5, 5},
		{10, 0, 10, 0},
		{10, -1, 10, 0},
		{1, 0.5, 1, 0},
		{0, 0.5, 0, 0},
	} {
		a, b := Split(mkSamples(c.n), c.frac, 1)
		if len(a) != c.calib || len(b) != c.hld {
			t.Errorf("Split(%d, %g): sizes %d/%d, want %d/%d", c.n, c.frac, len(a), len(b), c.calib, c.hld)
		}
	}
}

func TestTooShortError(t *testing.T) {
	var err error = &TooShortError{Path: "calib.txt", Have: 12, Need: 128, Unit: "samples of at least 64 tokens"}
	want := "calib.txt: too little text: 12 samples of at least 64 tokens, need 128 (use --samples 12 or more text)"
	if err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	if !IsTooShort(fmt.Errorf("calibrate: %w", err)) || IsTooShort(errors.New("other")) {
		t.Fatal("IsTooShort")
	}
	got := (&TooShortError{Need: 8}).Error()
	if want := "calibration text: too little text: 0 samples, need 8 (add more text)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLoadEmbeddedFile(t *testing.T) {
	got, err := Load("default.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Fatal("Load(default.jsonl) differs from Default()")
	}
}

func TestCheckText(t *testing.T) {
	for _, c := range []struct {
		name, data, want string
	}{
		{"text", "Once upon a time, a cat — ünïcode too.\n", ""},
		{"empty", "", ""},
		{"gguf", "GGUF\x03\x00\x00\x00rest", "f: is a GGUF model, not text"},
		{"nul", "abc\x00def", "f: not text: NUL byte at byte offset 3"},
		{"bad utf-8", "héllo \xff\xfe", "f: not text: invalid UTF-8 at byte offset 7"},
		{"truncated rune", "ab\xe2\x82", "f: not text: invalid UTF-8 at byte offset 2"},
	} {
		err := CheckText("f", []byte(c.data))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s: CheckText = %q, want %q", c.name, got, c.want)
		}
	}
}
