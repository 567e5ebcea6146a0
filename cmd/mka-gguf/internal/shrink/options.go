// Package shrink is the merge as a library: Options (what the merge
// command's flags say) validated in one place, and Run, which removes
// blocks from IN by a method and writes OUT, returning a Report. compare
// and bench use its parts: Prepare (one calibration for many merges),
// Job.Shrink and Job.Write.
package shrink

import (
	"math"
	"strconv"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/quant"
)

// Options is one merge. Defaults gives the values the merge command
// starts from; errors of Validate name the options by their flags.
type Options struct {
	In      string // IN.gguf
	Out     string // the file Run writes; "" only with DryRun
	Version string // mka-gguf's version, recorded in OUT and the report

	Method Method
	Remove int     // blocks to remove; 0: Ratio, or a quarter of them (at least 1)
	Ratio  float64 // fraction of the blocks to remove, in (0, 1); 0: Remove
	// Blocks are the original blocks to remove, exactly (--blocks); nil:
	// the method chooses.
	Blocks []int
	// TargetSize is the most bytes OUT may take (--target-size): the
	// fewest blocks are removed (and with Quant, quantized) that fit it;
	// 0: no target.
	TargetSize int64
	// PlanFile is a merge report (of a --dry-run) whose plan is applied
	// as it is, without a search (--plan).
	PlanFile string

	Lambda     Lambda // fusion weight of mka
	Order      Order  // pair order of mka's rule-based λ
	Norms      Norms  // norm weights of a fused block
	Candidates int    // search: candidates per step scored on held-back text
	Race       bool   // search: race the candidates (stop clear losers early)
	ScoreAll   bool   // search: score every candidate on held-back text
	Holdout    float64

	Align        bool        // fold a least-squares alignment into the block before each removed one
	Rho          float64     // the alignment's ridge relative to tr(XᵀX)/d, ≥ 0
	AlignTarget  AlignTarget // what the alignment is fitted to
	AlignSamples int         // calibration samples of each alignment pass
	Heal         bool        // after the mka search, refit later blocks' ffn_down to IN (pipeline.Searcher.Heal)
	// Fast makes the λ search choose by the closed-form filter alone, from
	// the calibration pass's fits (pipeline.Searcher.Fast): no held-back
	// round, no healing.
	Fast bool

	Calib    calib.Spec
	Analysis analysis.Options

	Quant       string      // quantize OUT to this type ("": no quantization)
	ImatrixFrom ImatrixFrom // importance matrix of Quant
	// Imatrix is an importance matrix file for Quant (--imatrix), used
	// instead of ImatrixFrom.
	Imatrix string
	// AllowRequantize lets Quant requantize an already quantized IN
	// (llama.cpp's --allow-requantize).
	AllowRequantize bool
	// MaxKLD is the quality gate (--max-kld): when the closing quality
	// check's mean KL divergence exceeds it, Run fails with a *GateError
	// and OUT is not kept; 0: no gate.
	MaxKLD       float64
	CheckQuality bool // closing KL divergence of OUT against IN
	Verify       bool // llama.cpp loads and decodes OUT before it is renamed into place
	DryRun       bool // plan only: nothing is written

	Threads int
	Load    cgo.ModelParams // how llama.cpp loads models (GPU layers)
	// Warn prints a warning found during the work (nil: on stderr).
	Warn func(format string, args ...any) `json:"-"`

	// Given names the options given on the command line (by flag), for
	// what depends on it: a given 0 that stands for "not given" is refused
	// (--remove 0), a given --ctx above the model's context is warned of.
	Given map[string]bool
}

// Defaults returns the merge command's defaults.
func Defaults() Options {
	return Options{
		Method: MKA, Lambda: LambdaSearch, Order: OrderGreedy, Norms: NormsWeighted,
		Candidates: 6, Race: true, Holdout: 0.15,
		Align: true, Rho: 1e-3, AlignTarget: TargetMerged, AlignSamples: 64, Heal: true,
		Calib:       calib.DefaultSpec(),
		Analysis:    analysis.Options{Rep: analysis.RepMean, Kernel: analysis.KernelMedian},
		ImatrixFrom: ImatrixMerged, CheckQuality: true, Verify: true,
	}
}

// Method is how blocks are chosen and removed (--method).
type Method string

const (
	MKA          Method = "mka"           // merge similar neighbours: the λ search or a rule
	PruneReverse Method = "prune-reverse" // drop the last blocks but the final one
	PruneBI      Method = "prune-bi"      // drop the lowest Block Influence (ShortGPT)
	PruneAngular Method = "prune-angular" // drop the most similar run (angular distance)
	ReplaceMe    Method = "replaceme"     // ReplaceMe as its code does it: one run, one least-squares transform
)

// Methods are the Method values.
var Methods = []Method{MKA, PruneReverse, PruneBI, PruneAngular, ReplaceMe}

// ParseMethod parses --method.
func ParseMethod(s string) (Method, error) { return usage.Choice("method", s, Methods) }

// ParseMethods parses compare's --methods, a comma-separated list.
func ParseMethods(s string) ([]Method, error) {
	var out []Method
	for _, f := range strings.Split(s, ",") {
		m, err := ParseMethod(f)
		if err != nil {
			return nil, usage.Errorf("--methods: %q is not one of %s", f, strings.Join(methodNames(), ", "))
		}
		out = append(out, m)
	}
	return out, nil
}

func methodNames() []string {
	s := make([]string, len(Methods))
	for i, m := range Methods {
		s[i] = string(m)
	}
	return s
}

// Lambda is mka's fusion weight (--lambda): LambdaSearch, LambdaPaper,
// LambdaCode or a number in [0, 1] (a fixed λ).
type Lambda string

const (
	// LambdaSearch removes one block at a time, chosen by held-back
	// calibration loss among the aligned candidates (λ = 1 at every step).
	LambdaSearch Lambda = "search"
	LambdaPaper  Lambda = "paper" // λ = the pair's similarity (the MKA paper)
	LambdaCode   Lambda = "code"  // the published code's rule
)

// ParseLambda parses --lambda.
func ParseLambda(s string) (Lambda, error) {
	switch l := Lambda(s); l {
	case LambdaSearch, LambdaPaper, LambdaCode:
		return l, nil
	}
	if v, err := strconv.ParseFloat(s, 64); err != nil || !(v >= 0 && v <= 1) {
		return "", usage.Errorf("--lambda %q is not search, paper, code or a number in [0, 1]", s)
	}
	return Lambda(s), nil
}

// Order is mka's pair order (--order).
type Order string

const (
	OrderGreedy      Order = "greedy"        // the most similar pair anywhere
	OrderBackToFront Order = "back-to-front" // the paper's
)

// Orders are the Order values.
var Orders = []Order{OrderGreedy, OrderBackToFront}

// ParseOrder parses --order.
func ParseOrder(s string) (Order, error) { return usage.Choice("order", s, Orders) }

// Norms are the norm weights of a fused block (--norms).
type Norms string

const (
	NormsWeighted Norms = "weighted" // like every tensor
	NormsFirst    Norms = "first"    // the first block's
)

// NormChoices are the Norms values.
var NormChoices = []Norms{NormsWeighted, NormsFirst}

// ParseNorms parses --norms.
func ParseNorms(s string) (Norms, error) { return usage.Choice("norms", s, NormChoices) }

// ParseAlign parses --align: ls (true) or none.
func ParseAlign(s string) (bool, error) {
	a, err := usage.Choice("align", s, []string{"ls", "none"})
	return a == "ls", err
}

// AlignTarget is what the alignment is fitted to (--align-target).
type AlignTarget string

const (
	// TargetMerged is the removed block's output in the model as merged so
	// far.
	TargetMerged AlignTarget = "merged"
	// TargetOriginal is its output in the original model (one more decode
	// per alignment batch).
	TargetOriginal AlignTarget = "original"
)

// AlignTargets are the AlignTarget values.
var AlignTargets = []AlignTarget{TargetMerged, TargetOriginal}

// ParseAlignTarget parses --align-target.
func ParseAlignTarget(s string) (AlignTarget, error) {
	return usage.Choice("align-target", s, AlignTargets)
}

// ImatrixFrom is where the importance matrix of --quant comes from
// (--imatrix-from).
type ImatrixFrom string

const (
	ImatrixMerged   ImatrixFrom = "merged"   // a calibration pass over the merged model
	ImatrixOriginal ImatrixFrom = "original" // over IN
	ImatrixNone     ImatrixFrom = "none"
)

// ImatrixSources are the ImatrixFrom values.
var ImatrixSources = []ImatrixFrom{ImatrixMerged, ImatrixOriginal, ImatrixNone}

// ParseImatrixFrom parses --imatrix-from.
func ParseImatrixFrom(s string) (ImatrixFrom, error) {
	return usage.Choice("imatrix-from", s, ImatrixSources)
}

// ParseQuant parses --quant: a llama.cpp file type.
func ParseQuant(s string) (quant.FileType, error) {
	ft, err := quant.Parse(s)
	if err != nil {
		return ft, usage.Errorf("--quant: %v", err)
	}
	return ft, nil
}

// ParseRho parses --rho: a relative ridge ≥ 0.
func ParseRho(s string) (float64, error) {
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || checkRho(r) != nil {
		return 0, usage.Errorf("--rho %q is not a number ≥ 0", s)
	}
	return r, nil
}

// checkRho refuses a ridge that is negative, infinite or NaN.
func checkRho(r float64) error {
	if !(r >= 0) || math.IsInf(r, 0) {
		return usage.Errorf("--rho %g is not a number ≥ 0", r)
	}
	return nil
}
