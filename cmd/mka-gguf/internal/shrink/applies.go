package shrink

import (
	"fmt"
	"strings"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
)

// What each option applies to: a flag given on the command line (Given)
// that the chosen method or mode would ignore is refused, with the reason,
// instead of being accepted silently.

// fixed reports whether the blocks to remove are given (--blocks, --plan)
// rather than chosen by the method.
func (o *Options) fixed() bool { return o.Blocks != nil || o.PlanFile != "" }

// search reports whether the merge runs the λ search.
func (o *Options) search() bool { return !o.fixed() && o.Method == MKA && o.Lambda == LambdaSearch }

// heals reports whether the healing stage follows the search (unless the
// architecture blocks it: pipeline.HealBlocked).
func (o *Options) heals() bool { return o.search() && o.Heal && o.Align && !o.Fast }

// ruleMKA reports whether mka fuses by a rule-based λ (paper, code, a
// number).
func (o *Options) ruleMKA() bool { return !o.fixed() && o.Method == MKA && o.Lambda != LambdaSearch }

// checkApplies refuses each given flag that does not apply to o.
func (o *Options) checkApplies() error {
	given := func(names ...string) string {
		for _, n := range names {
			if o.Given[n] {
				return n
			}
		}
		return ""
	}
	what := fmt.Sprintf("--method %s", o.Method)
	switch {
	case o.Blocks != nil:
		what = "--blocks"
	case o.PlanFile != "":
		what = "--plan"
	case o.ruleMKA():
		what = fmt.Sprintf("--lambda %s", o.Lambda)
	}
	// Only one way to say how many blocks go.
	counts := []string{"remove", "ratio", "blocks", "target-size", "plan"}
	var count []string
	for _, n := range counts {
		if o.Given[n] {
			count = append(count, "--"+n)
		}
	}
	if len(count) > 1 {
		return usage.Errorf("give one of --remove, --ratio, --blocks, --target-size and --plan, not %s", joinAnd(count))
	}
	if o.fixed() {
		if f := given("method", "lambda", "order", "norms", "candidates", "race", "score-all", "holdout", "rep", "kernel"); f != "" {
			return usage.Errorf("--%s does not apply with %s: it names the blocks to remove, no method chooses them", f, what)
		}
	}
	if !o.search() {
		if f := given("candidates", "race", "score-all", "holdout"); f != "" {
			return usage.Errorf("--%s applies to the λ search (--method mka --lambda search); %s does not search", f, what)
		}
	}
	if o.Method != MKA && !o.fixed() {
		if f := given("lambda", "order", "norms"); f != "" {
			return usage.Errorf("--%s applies to --method mka; %s drops whole blocks", f, what)
		}
	}
	if o.Fast {
		if !o.search() {
			return usage.Errorf("--fast applies to the λ search (--method mka --lambda search); %s does not search", what)
		}
		f := given("candidates", "race", "score-all", "holdout")
		if o.Given["heal"] && o.Heal { // --heal=false says what --fast does
			f = "heal"
		}
		if f != "" {
			return usage.Errorf("--%s does not apply with --fast: it chooses by the closed-form filter alone, without held-back text or healing", f)
		}
	}
	if o.search() {
		if f := given("order", "norms"); f != "" {
			return usage.Errorf("--%s applies to a rule-based --lambda (paper, code or a number): the λ search drops whole blocks, one at a time", f)
		}
	}
	if o.ruleMKA() {
		if f := given("align", "rho", "align-target", "align-samples"); f != "" {
			return usage.Errorf("--%s applies to --lambda search, the pruning methods, --blocks and --plan; %s fuses blocks without an alignment", f, what)
		}
	}
	if !o.Align {
		if f := given("rho", "align-target", "align-samples"); f != "" {
			return usage.Errorf("--%s applies with --align ls; --align none fits no alignment", f)
		}
	}
	if o.Method == PruneReverse && !o.fixed() {
		if f := given("rep", "kernel"); f != "" {
			return usage.Errorf("--%s applies to the similarity measures; --method prune-reverse drops the last blocks without measuring any", f)
		}
	}
	if o.Quant == "" {
		if f := given("imatrix-from", "imatrix", "allow-requantize"); f != "" {
			return usage.Errorf("--%s applies with --quant; without it OUT is not quantized", f)
		}
	}
	if o.Given["imatrix"] && o.Given["imatrix-from"] {
		return usage.Errorf("give --imatrix FILE or --imatrix-from, not both")
	}
	if o.Given["max-kld"] {
		switch {
		case o.DryRun:
			return usage.Errorf("--max-kld applies to a written OUT; --dry-run writes nothing")
		case !o.CheckQuality:
			return usage.Errorf("--max-kld needs the closing quality check; --no-check-quality skips it")
		}
	}
	return nil
}

// joinAnd joins "a", "b" and "c" as "a, b and c".
func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return fmt.Sprintf("%s and %s", strings.Join(s[:len(s)-1], ", "), s[len(s)-1])
}
