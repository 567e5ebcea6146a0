package main

// Issue 27 item 2: every command's --json follows the one schema of
// docs/json.md (package report): the same names for the tool version, the
// command, the input and output with their SHA-256, the quant type, the
// calibration and the quality block.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// legacyKeys are the names the schema replaced; no report may use them at
// its top level.
var legacyKeys = []string{"model", "model_sha256", "file", "sha256", "type", "version", "perplexity", "kl_divergence", "settings", "report"}

// schemaCase is one command run and what its JSON must hold.
type schemaCase struct {
	name    string
	args    []string
	in, out string // the files named as input and output ("": none)
	calib   bool   // has calibration {path, samples, tokens}
	quality string // "ppl": quality.ppl; "kld": and quality.kld
	quant   string // the quant type it reports
	check   func(t *testing.T, r map[string]any)
}

func TestJSONSchema(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")
	train := shared.Path(t, "data/tinystories-train.txt")
	held := shared.Path(t, "data/tinystories-heldout.txt")
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	calib := []string{"--calib", train, "--samples", "16", "--ctx", "64"}
	cases := []schemaCase{
		{name: "inspect", args: []string{"inspect", model}, in: model},
		{name: "env", args: []string{"env"}},
		{name: "synth", args: []string{"synth", at("synth.gguf")}, out: at("synth.gguf"), quant: "F32"},
		{name: "quantize", args: []string{"quantize", model, at("q8.gguf"), "Q8_0"}, in: model, out: at("q8.gguf"), quant: "Q8_0"},
		{name: "eval", args: []string{"eval", model, "--text", held, "--ctx", "64", "--windows", "4"}, in: model, quality: "ppl"},
		{name: "eval --base", args: []string{"eval", at("q8.gguf"), "--base", model, "--text", held, "--ctx", "64", "--windows", "4"}, in: at("q8.gguf"), quality: "kld"},
		{name: "imatrix", args: append([]string{"imatrix", model, "-o", at("im.gguf")}, calib...), in: model, out: at("im.gguf"), calib: true},
		{name: "analyze", args: append([]string{"analyze", model}, calib...), in: model, calib: true},
		{name: "make-choices", args: []string{"make-choices", held, "-o", at("cloze.jsonl"), "--tasks", "8"}, in: held, out: at("cloze.jsonl")},
		{name: "merge --dry-run", args: append([]string{"merge", "--dry-run", "--method", "prune-bi", "--align", "none", "-n", "2", model, at("dry.gguf")}, calib...),
			in: model, calib: true, check: func(t *testing.T, r map[string]any) {
				if r["dry_run"] != true || num(r["predicted_bytes"]) <= 0 || r["output"] != nil || len(list(r["steps"])) != 2 || len(list(r["layout"])) != 3 {
					t.Errorf("a dry run: dry_run %v, predicted_bytes %v, output %v, steps %v, layout %v", r["dry_run"], r["predicted_bytes"], r["output"], r["steps"], r["layout"])
				}
			}},
		{name: "merge", args: append([]string{"merge", "--blocks", "1,3", "--quant", "Q8_0", "--imatrix-from", "none", model, at("m.gguf")}, calib...),
			in: model, out: at("m.gguf"), calib: true, quality: "kld", quant: "Q8_0", check: func(t *testing.T, r map[string]any) {
				var orig []float64
				for _, s := range list(r["steps"]) {
					for _, b := range list(s.(map[string]any)["original_blocks"]) {
						orig = append(orig, num(b))
					}
				}
				if len(orig) != 2 || orig[0]+orig[1] != 4 || r["dry_run"] != false || num(r["predicted_bytes"]) <= 0 {
					t.Errorf("steps' original_blocks %v (want 1 and 3), dry_run %v, predicted_bytes %v", orig, r["dry_run"], r["predicted_bytes"])
				}
			}},
		{name: "merge --fast", args: append([]string{"merge", "--fast", "-n", "2", model, at("fast.gguf")}, calib...),
			in: model, out: at("fast.gguf"), calib: true, quality: "kld", check: func(t *testing.T, r map[string]any) {
				search := list(r["search"])
				if len(search) != 2 || search[0].(map[string]any)["prefilled"] != true || r["heal"] != nil {
					t.Errorf("search %v, heal %v: want 2 steps, the first prefilled by the calibration pass, no healing", search, r["heal"])
				}
			}},
		{name: "compare", args: append([]string{"compare", model, "--text", held, "--methods", "prune-reverse", "--align", "none", "--remove", "1",
			"--eval-ctx", "64", "--windows", "2", "--out", at("cmp")}, calib...), in: model, calib: true, check: func(t *testing.T, r map[string]any) {
			rows := list(r["results"])
			if r["output"] != at("cmp") || len(rows) != 1 {
				t.Fatalf("output %v, results %v", r["output"], rows)
			}
			row := rows[0].(map[string]any)
			if o, _ := row["output"].(string); !strings.HasPrefix(o, at("cmp")) || len(row["output_sha256"].(string)) != 64 {
				t.Errorf("result's output %v, output_sha256 %v", row["output"], row["output_sha256"])
			}
		}},
		{name: "bench", args: []string{"bench", "--size", "tiny", "--only", "simd"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"-q"}, tc.args...), "--json")
			stdout, stderr, code := run(t, args...)
			wantOK(t, args, stdout, stderr, code)
			var r map[string]any
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("%v in:\n%s", err, stdout)
			}
			checkSchema(t, tc, r)
		})
	}
}

// checkSchema checks r, the --json of tc, against docs/json.md.
func checkSchema(t *testing.T, tc schemaCase, r map[string]any) {
	t.Helper()
	cmd := strings.Fields(tc.name)[0]
	if v, _ := r["mka_gguf_version"].(string); v == "" || r["command"] != cmd {
		t.Errorf("mka_gguf_version %v, command %v; want a version and %q", r["mka_gguf_version"], r["command"], cmd)
	}
	for _, k := range legacyKeys {
		if _, ok := r[k]; ok {
			t.Errorf("has the old key %q", k)
		}
	}
	for _, f := range []struct{ key, path string }{{"input", tc.in}, {"output", tc.out}} {
		if f.path == "" {
			if _, ok := r[f.key+"_sha256"]; ok && tc.in == "" {
				t.Errorf("%s_sha256 without %s", f.key, f.key)
			}
			continue
		}
		sum := sha256.Sum256(readFile(t, f.path))
		if r[f.key] != f.path || r[f.key+"_sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s %v, %s_sha256 %v; want %s, %x", f.key, r[f.key], f.key, r[f.key+"_sha256"], f.path, sum)
		}
	}
	if tc.quant != "" && r["quant"] != tc.quant {
		t.Errorf("quant %v, want %s", r["quant"], tc.quant)
	}
	if tc.calib {
		c, _ := r["calibration"].(map[string]any)
		if c == nil || c["path"] == nil || num(c["samples"]) <= 0 || num(c["tokens"]) <= 0 {
			t.Errorf("calibration %v: want {path, samples, tokens}", r["calibration"])
		}
	}
	if tc.quality != "" {
		q, _ := r["quality"].(map[string]any)
		if q == nil || num(q["ppl"]) <= 0 || num(q["tokens"]) <= 0 || q["text"] == nil {
			t.Fatalf("quality %v: want {text, tokens, ppl}", r["quality"])
		}
		if _, ok := q["kld"]; ok != (tc.quality == "kld") || (ok && q["base"] == nil) {
			t.Errorf("quality %v: kld and base want %v", q, tc.quality == "kld")
		}
	}
	if tc.check != nil {
		tc.check(t, r)
	}
}

// num is a JSON number, or NaN-free 0 when v is none.
func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// list is a JSON array, or nil.
func list(v any) []any {
	l, _ := v.([]any)
	return l
}
