package shrink

import (
	"errors"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/merge"
)

// TestValidate checks that Validate accepts the defaults and refuses each
// bad value or combination with a usage error naming the flag.
func TestValidate(t *testing.T) {
	ok := Defaults()
	ok.Threads, ok.Out = 1, "out.gguf"
	if err := ok.Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"ctx", func(o *Options) { o.Calib.Ctx = 4 }, "--ctx 4"},
		{"samples", func(o *Options) { o.Calib.Samples = 0 }, "--samples 0"},
		{"manifold", func(o *Options) { o.Calib.Samples = 4 }, "--samples 4 is out of range: want ≥ 8"},
		{"batch", func(o *Options) { o.Calib.Batch = 0 }, "--batch 0"},
		{"candidates", func(o *Options) { o.Candidates = 0 }, "--candidates 0"},
		{"align-samples", func(o *Options) { o.AlignSamples = 0 }, "--align-samples 0"},
		{"threads", func(o *Options) { o.Threads = 0 }, "--threads 0"},
		{"remove given 0", func(o *Options) { o.Given = map[string]bool{"remove": true} }, "--remove 0"},
		{"remove negative", func(o *Options) { o.Remove = -2 }, "--remove -2"},
		{"method", func(o *Options) { o.Method = "prune" }, `--method "prune"`},
		{"order", func(o *Options) { o.Order = "random" }, `--order "random"`},
		{"norms", func(o *Options) { o.Norms = "last" }, `--norms "last"`},
		{"imatrix-from", func(o *Options) { o.ImatrixFrom = "x" }, `--imatrix-from "x"`},
		{"rep", func(o *Options) { o.Analysis.Rep = "first" }, `--rep "first"`},
		{"kernel", func(o *Options) { o.Analysis.Kernel = "gauss" }, `--kernel "gauss"`},
		{"align-target", func(o *Options) { o.AlignTarget = "both" }, `--align-target "both"`},
		{"lambda", func(o *Options) { o.Lambda = "2" }, `--lambda "2"`},
		{"rho", func(o *Options) { o.Rho = -1 }, "--rho -1"},
		{"holdout", func(o *Options) { o.Holdout = 1.2 }, "--holdout 1.2"},
		{"ratio", func(o *Options) { o.Ratio = 1.5 }, "--ratio 1.5"},
		{"ratio given 0", func(o *Options) { o.Given = map[string]bool{"ratio": true} }, "--ratio 0"},
		{"remove and ratio", func(o *Options) { o.Remove, o.Ratio = 2, 0.25 }, "give --remove or --ratio, not both"},
		{"quant", func(o *Options) { o.Quant = "Q9" }, "--quant"},
		{"quant without imatrix", func(o *Options) { o.Quant, o.ImatrixFrom = "IQ2_XXS", ImatrixNone }, "IQ2_XXS needs an importance matrix"},
	} {
		o := ok
		c.edit(&o)
		err := o.Validate()
		var ue *usage.Error
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a usage error with %q", c.name, err, c.want)
		}
	}
	// prune-reverse plans without a manifold: 4 samples do for an
	// unaligned merge or a dry run, not for an aligned one.
	o := ok
	o.Method, o.Calib.Samples, o.Align = PruneReverse, 4, false
	if err := o.Validate(); err != nil {
		t.Errorf("prune-reverse --align none --samples 4: %v", err)
	}
	o.Align, o.DryRun = true, true
	if err := o.Validate(); err != nil {
		t.Errorf("prune-reverse --dry-run --samples 4: %v", err)
	}
	o.DryRun = false
	if err := o.Validate(); err == nil {
		t.Error("prune-reverse --align ls --samples 4: want the manifold's minimum")
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{"search", "paper", "code", "0", "0.5", "1"} {
		if l, err := ParseLambda(s); err != nil || string(l) != s {
			t.Errorf("ParseLambda(%q) = %q, %v", s, l, err)
		}
	}
	for _, s := range []string{"", "auto", "-0.1", "1.5", "NaN"} {
		if _, err := ParseLambda(s); err == nil {
			t.Errorf("ParseLambda(%q): want an error", s)
		}
	}
	if _, err := ParseRho("auto"); err == nil {
		t.Error(`ParseRho("auto"): want an error (the grid was removed)`)
	}
	if r, err := ParseRho("1e-3"); err != nil || r != 1e-3 {
		t.Errorf(`ParseRho("1e-3") = %v, %v`, r, err)
	}
	ms, err := ParseMethods("mka,prune-bi")
	if err != nil || len(ms) != 2 || ms[0] != MKA || ms[1] != PruneBI {
		t.Errorf("ParseMethods = %v, %v", ms, err)
	}
	if _, err := ParseMethods("mka,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("ParseMethods(mka,nope): %v", err)
	}
	if a, err := ParseAlign("none"); err != nil || a {
		t.Errorf("ParseAlign(none) = %v, %v", a, err)
	}
	if _, err := analysis.ParseRep("last"); err != nil {
		t.Errorf("ParseRep(last): %v", err)
	}
}

// TestMKAOptions checks what --order and --lambda give merge.PlanMKA.
func TestMKAOptions(t *testing.T) {
	o := Defaults()
	o.Order, o.Lambda = OrderBackToFront, "0.25"
	m := o.mka()
	if m.Lambda != merge.LambdaFixed || m.Fixed != 0.25 || m.Order != merge.OrderBackToFront {
		t.Errorf("--order back-to-front --lambda 0.25: %+v", m)
	}
	o.Order, o.Lambda = OrderGreedy, LambdaCode
	if m := o.mka(); m.Lambda != merge.LambdaCode || m.Order != merge.OrderGreedy {
		t.Errorf("--lambda code: %+v", m)
	}
	o.Lambda = LambdaSearch // the search plans its initial similarity with the paper's λ
	if m := o.mka(); m.Lambda != merge.LambdaPaper {
		t.Errorf("--lambda search: %+v", m)
	}
}

func TestRemoveCount(t *testing.T) {
	for _, c := range []struct {
		remove int
		ratio  float64
		blocks int
		want   int
	}{
		{0, 0, 12, 3}, {0, 0, 3, 1}, {2, 0, 12, 2}, {0, 0.5, 12, 6}, {0, 0.05, 12, 1},
	} {
		o := Options{Remove: c.remove, Ratio: c.ratio}
		if n, err := o.removeCount(&Blocks{Count: c.blocks, Period: 1}); err != nil || n != c.want {
			t.Errorf("remove %d ratio %g of %d: %d, %v; want %d", c.remove, c.ratio, c.blocks, n, err, c.want)
		}
	}
	if _, err := (&Options{Remove: 5}).removeCount(&Blocks{Count: 5, Period: 1}); err == nil {
		t.Error("remove 5 of 5: want an error")
	}
}
