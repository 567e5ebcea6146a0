// Package compare merges one model with several methods at several block
// counts from one calibration pass and measures every merged model against
// the original: perplexity on held-out text, KL divergence from a base
// model and, optionally, multiple-choice accuracy.
package compare

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
)

// Options is one comparison.
type Options struct {
	// Merge holds IN and the settings every merge shares (calibration,
	// search, alignment); its Method, Align, Remove, Ratio and Out are
	// not used.
	Merge   shrink.Options
	Methods []shrink.Method
	Aligns  []bool // every method with each: true is --align ls
	Counts  []int  // blocks to remove
	Text    string // held-out text for perplexity (never the calibration text)
	EvalCtx int    // perplexity window
	Windows int    // windows scored per model (0: all)
	Base    string // the KL divergence's reference model ("": IN)
	BaseTop int    // tokens kept of each base distribution (kld.TopK)
	Choices string // multiple-choice tasks scored for every model ("": none)
	Tasks   int    // at most this many of them (0: all)
	Dir     string // the output folder; the base distributions are saved there while compare runs
}

// Variant is one row of compare: a method with or without alignment, its
// label in the table and its name in file names.
type Variant struct {
	Method      shrink.Method
	Align       bool
	Label, Name string
}

// Variants crosses Methods with Aligns (replaceme, which always fits its
// transform, once).
func (o *Options) Variants() []Variant {
	var vs []Variant
	for _, m := range o.Methods {
		if m == shrink.ReplaceMe {
			vs = append(vs, Variant{Method: m, Align: true, Label: string(m), Name: string(m)})
			continue
		}
		for _, a := range o.Aligns {
			v := Variant{Method: m, Align: a, Label: string(m), Name: string(m)}
			if a {
				v.Label, v.Name = v.Label+" --align ls", v.Name+"-ls"
			}
			vs = append(vs, v)
		}
	}
	return vs
}

// ParseAligns parses --align for compare: ls, none or both, comma
// separated.
func ParseAligns(s string) ([]bool, error) {
	var out []bool
	for _, a := range strings.Split(s, ",") {
		v, err := shrink.ParseAlign(a)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ParseCounts parses --remove for compare: comma-separated block counts.
func ParseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, usage.Errorf("--remove: %q is not a positive block count", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// Check validates every variant's merge options and compare's own, then
// what depends on IN's metadata (every count leaves a block) and the text;
// it returns the warnings (a given --ctx or --eval-ctx above IN's training
// context).
func (o *Options) Check() ([]string, error) {
	for _, v := range o.Variants() {
		mo := o.Merge
		mo.Method, mo.Align, mo.DryRun = v.Method, v.Align, true
		if err := mo.Validate(); err != nil {
			return nil, err
		}
	}
	if err := o.Merge.Calib.Validate(true); err != nil {
		return nil, err
	}
	if err := usage.AtLeast("eval-ctx", o.EvalCtx, 8, "tokens"); err != nil {
		return nil, err
	}
	if o.Windows != 0 || o.Merge.Given["windows"] {
		if err := usage.AtLeast("windows", o.Windows, 1, "windows"); err != nil {
			return nil, err
		}
	}
	if _, err := corpus.ReadText(o.Text); err != nil {
		return nil, err
	}
	h, err := shrink.ReadHeader(o.Merge.In)
	if err != nil {
		return nil, err
	}
	var warnings []string
	for _, w := range []struct {
		name string
		v    int
	}{{"ctx", o.Merge.Calib.Ctx}, {"eval-ctx", o.EvalCtx}} {
		if s := shrink.CtxWarning(w.name, w.v, o.Merge.In, h); s != "" && o.Merge.Given[w.name] {
			warnings = append(warnings, s)
		}
	}
	if h.Blocks > 0 {
		for _, n := range o.Counts {
			if err := shrink.CheckRemove(n, o.Merge.In, h.Blocks); err != nil {
				return nil, err
			}
		}
	}
	return warnings, nil
}

// Row is one (method, removed) result, or the original's.
type Row struct {
	Method  string  `json:"method"`
	Removed int     `json:"removed"`
	Blocks  int     `json:"blocks"`
	File    string  `json:"output"`
	Bytes   int64   `json:"bytes"`
	SHA256  string  `json:"output_sha256"`
	PPL     float64 `json:"ppl"`
	StdErr  float64 `json:"ppl_stderr"`
	Plan    string  `json:"plan"`
	Align   string  `json:"align,omitempty"`
	// SearchSeconds is the search and alignment time after calibration.
	SearchSeconds float64 `json:"search_seconds,omitempty"`
	Figures
}

// Results is compare's results.json.
type Results struct {
	report.Head
	report.In
	Output      string              `json:"output"` // the --out folder
	Text        string              `json:"text"`
	EvalCtx     int                 `json:"eval_ctx"`
	Original    Row                 `json:"original"`
	Rows        []Row               `json:"results"`
	Base        string              `json:"base"`              // the KLD's reference model
	Choices     string              `json:"choices,omitempty"` // multiple-choice tasks
	Calibration *report.Calibration `json:"calibration"`
}

// Run calibrates IN once, merges every variant at every count into the
// file out names (its Tmp is written, its Path reported) and measures each
// against the base.
func Run(ctx context.Context, o Options, out func(v Variant, n int) *files.File) (*Results, error) {
	text, err := corpus.ReadText(o.Text)
	if err != nil {
		return nil, err
	}
	vs := o.Variants()
	need := shrink.Needs{Calib: true}
	for _, v := range vs {
		need.Held = need.Held || (v.Method == shrink.MKA && o.Merge.Lambda == shrink.LambdaSearch)
		need.Edit = need.Edit || shrink.NeedsEdit(v.Method, o.Merge.Lambda, v.Align)
	}
	j, err := shrink.Prepare(ctx, o.Merge, need)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	for _, n := range o.Counts {
		if n >= j.Blocks() {
			return nil, usage.Errorf("cannot remove %d of %d blocks", n, j.Blocks())
		}
	}
	in := o.Merge.In
	sum, err := files.SHA256(in)
	if err != nil {
		return nil, err
	}
	evalCtx := min(o.EvalCtx, j.CtxTrain())
	q, err := newQuality(ctx, &o, text, evalCtx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Text, err)
	}
	defer q.close()
	orig, err := q.original(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Text, err)
	}
	res := &Results{In: report.In{Input: in, InputSHA256: sum}, Text: o.Text, EvalCtx: evalCtx, Calibration: j.Calibration(), Base: q.basePath, Choices: o.Choices,
		Original: Row{Method: "original", Blocks: j.Blocks(), File: in, Bytes: j.Size(), SHA256: sum, PPL: orig.PPL, StdErr: orig.StdErr,
			Figures: orig.Figures}}
	for _, v := range vs {
		for _, n := range o.Counts {
			row, err := merged(ctx, j, q, v, n, sum, out(v, n))
			if err != nil {
				return nil, err
			}
			res.Rows = append(res.Rows, *row)
			progress.Printf("compare: %s, %d removed: PPL %.3f, KLD %.4f, same top %.2f %%\n", v.Label, n, row.PPL, row.KLD, row.SameTop)
		}
	}
	return res, nil
}

// merged makes and measures one merged model: variant v, n blocks
// removed, written to f.
func merged(ctx context.Context, j *shrink.Job, q *quality, v Variant, n int, sum string, f *files.File) (*Row, error) {
	r, err := j.Shrink(v.Method, v.Align, n)
	if err != nil {
		return nil, fmt.Errorf("%s at %d removed: %w", v.Label, n, err)
	}
	if err := j.Write(ctx, r, f.Tmp, j.Metadata(r, sum), true); err != nil {
		return nil, err
	}
	m, err := q.measure(f.Tmp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	st, err := os.Stat(f.Tmp)
	if err != nil {
		return nil, err
	}
	fsum, err := files.SHA256(f.Tmp)
	if err != nil {
		return nil, err
	}
	p := r.Plan
	return &Row{Method: v.Label, Removed: n, Blocks: len(p.Layout), File: f.Path, Bytes: st.Size(), SHA256: fsum, PPL: m.PPL, StdErr: m.StdErr,
		Plan: strings.TrimSpace(p.String()), Align: r.AlignMethod, SearchSeconds: r.Seconds, Figures: m.Figures}, nil
}
