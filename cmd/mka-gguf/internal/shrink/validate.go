package shrink

import (
	"fmt"
	"math"
	"slices"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/quant"
)

// Validate checks every value and choice of o and their combinations,
// before any work; Check adds what depends on IN. Every message names the
// flag and states the valid range.
func (o *Options) Validate() error {
	if err := o.Calib.Validate(o.calibrates()); err != nil {
		return err
	}
	for _, r := range []struct {
		name     string
		v, least int
		what     string
	}{
		{"candidates", o.Candidates, 1, "candidates per removed block scored on held-back text"},
		{"align-samples", o.AlignSamples, 1, "calibration samples per alignment pass"},
		{"threads", o.Threads, 1, "threads"},
	} {
		if err := usage.AtLeast(r.name, r.v, r.least, r.what); err != nil {
			return err
		}
	}
	if o.Remove != 0 || o.Given["remove"] {
		if err := usage.AtLeast("remove", o.Remove, 1, "blocks"); err != nil {
			return err
		}
	}
	if _, err := ParseMethod(string(o.Method)); err != nil {
		return err
	}
	if _, err := ParseOrder(string(o.Order)); err != nil {
		return err
	}
	if _, err := ParseNorms(string(o.Norms)); err != nil {
		return err
	}
	if _, err := ParseImatrixFrom(string(o.ImatrixFrom)); err != nil {
		return err
	}
	if err := o.Analysis.Validate(); err != nil {
		return err
	}
	if _, err := ParseAlignTarget(string(o.AlignTarget)); err != nil {
		return err
	}
	if _, err := ParseLambda(string(o.Lambda)); err != nil {
		return err
	}
	if err := checkRho(o.Rho); err != nil {
		return err
	}
	if o.MaxKLD < 0 || math.IsNaN(o.MaxKLD) || (o.Given["max-kld"] && !(o.MaxKLD > 0)) {
		return usage.Errorf("--max-kld %g is out of range: want a mean KL divergence > 0 (nats per token)", o.MaxKLD)
	}
	if h := o.Holdout; !(h > 0 && h <= 0.9) {
		return usage.Errorf("--holdout %g is out of range: want a fraction in (0, 0.9]", h)
	}
	if o.Ratio != 0 || o.Given["ratio"] {
		if r := o.Ratio; !(r > 0 && r < 1) {
			return usage.Errorf("--ratio %g is out of range: want a fraction in (0, 1) (blocks removed / blocks)", r)
		}
		if o.Remove != 0 || o.Given["remove"] {
			return usage.Errorf("give --remove or --ratio, not both")
		}
	}
	if o.Quant != "" {
		ft, err := ParseQuant(o.Quant)
		if err != nil {
			return err
		}
		if o.ImatrixFrom == ImatrixNone && ft.NeedsImatrix {
			return usage.Errorf("%s needs an importance matrix; use --imatrix-from merged or original", ft.Name)
		}
	}
	return nil
}

// calibrates reports whether the merge runs a calibration pass: every
// method but prune-reverse plans from it, and every aligned method fits
// its alignments on it (a dry run of a baseline aligns nothing).
func (o *Options) calibrates() bool {
	if o.fixed() {
		return false // a given plan needs no calibration pass (its alignment, chunks: edits)
	}
	return o.Method != PruneReverse || o.edits()
}

// edits reports whether the method runs on the loaded model (pipeline):
// the λ search always, a pruning baseline when aligned (not in a dry run,
// whose plan does not depend on the alignment).
func (o *Options) edits() bool {
	if o.fixed() {
		return o.align()
	}
	return NeedsEdit(o.Method, o.Lambda, o.align())
}

// align is whether the merge aligns: a baseline's dry run does not, nor
// one of a given plan.
func (o *Options) align() bool {
	return o.Align && !(o.DryRun && (o.Method != MKA || o.fixed()))
}

// NeedsEdit reports whether method runs on the in-memory editor: mka with
// the λ search always, a pruning baseline when aligned.
func NeedsEdit(method Method, lambda Lambda, align bool) bool {
	if method == ReplaceMe {
		return true // it always fits its transform
	}
	if method == MKA {
		return lambda == LambdaSearch
	}
	return align
}

// Header is what the checks read of a model before any work.
type Header struct {
	Blocks int // decoder blocks; 0: not recorded
	Train  int // training context in tokens; 0: not recorded
}

// ReadHeader reads a model's Header from its GGUF metadata.
func ReadHeader(path string) (Header, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	arch := f.Arch()
	var h Header
	if v, ok := f.Uint(arch + ".block_count"); ok {
		h.Blocks = int(v)
	}
	if v, ok := f.Uint(arch + ".context_length"); ok {
		h.Train = int(min(v, math.MaxInt32))
	}
	return h, nil
}

// CtxWarning is the warning for a given --name v above the model's
// training context ("" when there is nothing to say); the work uses the
// training context then.
func CtxWarning(name string, v int, path string, h Header) string {
	if h.Train <= 0 || v <= h.Train {
		return ""
	}
	return fmt.Sprintf("--%s %d is above %s's training context of %d tokens; using %d", name, v, path, h.Train, h.Train)
}

// Check is Validate, the options' applicability (checkApplies) and what
// depends on IN's metadata, before it is loaded: the blocks to remove must
// leave at least one (resolve), the disk must have room for OUT, a given
// --ctx above the training context is warned of (the work uses the
// training context). It returns the warnings.
func (o *Options) Check() ([]string, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := o.checkApplies(); err != nil {
		return nil, err
	}
	if o.In == "" {
		return nil, nil
	}
	h, err := ReadHeader(o.In)
	if err != nil {
		return nil, err
	}
	var warnings []string
	if w := CtxWarning("ctx", o.Calib.Ctx, o.In, h); w != "" && o.Given["ctx"] {
		warnings = append(warnings, w)
	}
	if h.Blocks == 0 {
		return warnings, nil // Prepare names what is missing
	}
	r, err := o.resolveFile(false)
	if err != nil {
		return nil, err
	}
	return append(warnings, r.notes...), nil
}

// resolved is what the checks find out from IN's metadata for Run.
type resolved struct {
	n         int         // blocks to remove
	plan      *merge.Plan // the plan of --blocks or --plan; nil: the method plans
	align     string      // --plan's alignment ("ls", "none"; "": not given)
	predicted int64       // OUT's predicted size
	notes     []string    // warnings to show
}

// resolveFile opens IN and resolves o on it; with hash, --plan's report
// must name IN's SHA-256.
func (o *Options) resolveFile(hash bool) (*resolved, error) {
	f, b, err := Open(o.In)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return o.resolve(f, b, hash)
}

// resolve checks what o removes from IN (f, b) and finds how many blocks
// go and OUT's predicted size, before any work: --ratio, --remove,
// --blocks and --target-size in range, --plan's report made for IN, a
// quantized IN quantized again only with AllowRequantize, --imatrix
// readable and room on the disk.
func (o *Options) resolve(f *gguf.File, b *Blocks, hash bool) (*resolved, error) {
	L := b.Count
	if L < 2 {
		return nil, fmt.Errorf("%s: %d block: nothing can be removed", o.In, L)
	}
	if o.Ratio != 0 {
		if n := int(math.Round(o.Ratio * float64(L))); n < 1 || n > L-1 {
			return nil, usage.Errorf("--ratio %g removes %d of %s's %d blocks; want 1 to %d (a ratio in [%.3g, %.3g])",
				o.Ratio, n, o.In, L, L-1, 0.5/float64(L), (float64(L)-1.5)/float64(L))
		}
	}
	if err := CheckRemove(o.Remove, o.In, L); err != nil {
		return nil, err
	}
	r := &resolved{}
	var err error
	switch {
	case o.Blocks != nil:
		for _, x := range o.Blocks {
			if x >= L {
				return nil, usage.Errorf("--blocks: block %d is out of range for %s's %d blocks: want 0 to %d", x, o.In, L, L-1)
			}
		}
		if len(o.Blocks) >= L {
			return nil, usage.Errorf("--blocks names all %d blocks of %s; leave at least one", L, o.In)
		}
		if r.plan, err = blocksPlan(o.Blocks, L); err != nil {
			return nil, err
		}
	case o.PlanFile != "":
		sum := ""
		if hash {
			if sum, err = files.SHA256(o.In); err != nil {
				return nil, err
			}
		}
		if r.plan, r.align, err = loadPlan(o.PlanFile, o.In, L, sum); err != nil {
			return nil, err
		}
		fuses := slices.ContainsFunc(r.plan.Steps, func(s merge.Step) bool { return s.Kind == merge.StepFuse })
		if fuses && o.Given["align"] && o.Align {
			return nil, usage.Errorf("--align ls: %s's plan fuses blocks, which is done without an alignment; leave out --align", o.PlanFile)
		}
	case o.TargetSize > 0:
		if r.n, err = o.targetCount(f, b); err != nil {
			return nil, err
		}
		r.notes = append(r.notes, fmt.Sprintf("--target-size %s: removing %d of %s's %d blocks (OUT predicted at %s)",
			files.Human(uint64(o.TargetSize)), r.n, o.In, L, files.Human(uint64(o.predict(f, b, r.n)))))
	default:
		if r.n, err = o.removeCount(b); err != nil {
			return nil, err
		}
	}
	if r.plan != nil {
		if err := b.CheckPlan(r.plan); err != nil { // an index pattern it would break
			return nil, err
		}
		r.n = r.plan.Removed()
	}
	if o.Quant != "" {
		if has := QuantizedAs(f); has != "" {
			if !o.AllowRequantize {
				return nil, RequantizeError(o.In, has, o.Quant)
			}
			r.notes = append(r.notes, fmt.Sprintf("requantizing %s's %s weights to %s (--allow-requantize): the quality suffers more than quantizing its F16 or F32 original", o.In, has, o.Quant))
		}
	}
	if o.Imatrix != "" {
		if _, err := quant.LoadImatrix(o.Imatrix); err != nil {
			return nil, fmt.Errorf("--imatrix: %w", err)
		}
	}
	r.predicted = o.predict(f, b, r.n)
	if err := o.checkSpace(f, b, r.n); err != nil {
		return nil, err
	}
	return r, nil
}

// CheckRemove refuses removing n (> 0) of path's L blocks unless n ≤ L−1
// and its architecture allows it (arch.Model.CheckRemoval).
func CheckRemove(n int, path string, L int) error {
	if n > L-1 {
		return usage.Errorf("--remove %d is out of range for %s's %d blocks: want 1 to %d", n, path, L, L-1)
	}
	if n < 1 {
		return nil
	}
	f, b, err := Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return b.CheckRemoval(n)
}

// removeCount is the number of blocks to remove from b: Remove, or Ratio
// of them, or the architecture's default (a quarter, at least 1).
func (o *Options) removeCount(b *Blocks) (int, error) {
	L, n := b.Count, o.Remove
	if o.Ratio != 0 {
		n = int(math.Round(o.Ratio * float64(L)))
	}
	if n == 0 {
		n = b.DefaultRemoval()
	}
	if n < 1 || n >= L {
		return 0, usage.Errorf("cannot remove %d of %d blocks", n, L)
	}
	return n, b.CheckRemoval(n)
}
