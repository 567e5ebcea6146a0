package merge

import (
	"fmt"
	"math"
	"strings"
)

// StepKind says what a plan step does.
type StepKind int

const (
	// StepDrop removes block Blocks[0].
	StepDrop StepKind = iota + 1

	// StepFuse replaces the adjacent blocks Blocks[0] and Blocks[1] =
	// Blocks[0]+1 by one block with weights θ = λ θ_0 + (1 - λ) θ_1, placed
	// at index Blocks[0].
	StepFuse
)

// String returns "drop" or "fuse".
func (k StepKind) String() string {
	switch k {
	case StepDrop:
		return "drop"
	case StepFuse:
		return "fuse"
	}
	return fmt.Sprintf("StepKind(%d)", int(k))
}

// MarshalText writes the kind as "drop" or "fuse" (for JSON reports).
func (k StepKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads "drop" or "fuse".
func (k *StepKind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "drop":
		*k = StepDrop
	case "fuse":
		*k = StepFuse
	default:
		return fmt.Errorf("%w: unknown step kind %q", ErrPlan, b)
	}
	return nil
}

// Step is one operation of a Plan. Block indices refer to the current
// blocks, after all earlier steps of the plan have been applied; every step
// removes exactly one block.
type Step struct {
	Kind StepKind `json:"kind"`

	// Blocks holds, for StepFuse, the two adjacent current blocks
	// (Blocks[1] = Blocks[0]+1); for StepDrop, the dropped block in
	// Blocks[0] (Blocks[1] is ignored).
	Blocks [2]int `json:"blocks"`

	// Lambda is the weight λ of Blocks[0] in a fusion, in [0, 1]; ignored
	// for StepDrop.
	Lambda float64 `json:"lambda"`

	// Similarity is the score that chose the step, for reports: the
	// similarity of the fused pair for PlanMKA, the mean input/output
	// cosine 1 - BI for PlanPruneBI, 1 - angular distance for
	// PlanPruneAngular, and 0 for PlanPruneReverse.
	Similarity float64 `json:"similarity"`
}

// Weighted is one original block and its weight in an output block.
type Weighted struct {
	Block int     `json:"block"`
	W     float64 `json:"weight"`
}

// Heaviest returns the part of ws with the largest weight (the first of
// equal ones): the original block an output block stands for. ws must not
// be empty.
func Heaviest(ws []Weighted) Weighted {
	best := ws[0]
	for _, w := range ws[1:] {
		if w.W > best.W {
			best = w
		}
	}
	return best
}

// Plan is a sequence of steps that shrinks a model of Original blocks
// (0 … Original-1), and its result.
//
// Layout has one entry per output block, in order: the original blocks it is
// made of, in ascending order, with weights that sum to 1. An unchanged
// block is [{b, 1}]; a dropped block appears nowhere; a fusion lists all its
// original blocks, zero weights included (λ = 1 keeps the second block at
// weight 0), so that the structure does not depend on λ. Fusions compose
// linearly: fusing an output block made of {3: λ, 4: 1-λ} with block 5 at
// weight λ' gives {3: λ'λ, 4: λ'(1-λ), 5: 1-λ'}.
type Plan struct {
	// Method names the planner: "reverse", "bi", "angular", "mka".
	Method   string
	Original int
	Steps    []Step
	Layout   [][]Weighted
}

// NewPlan returns the plan with the given steps and its Layout, or an error
// wrapping ErrPlan if a step is out of range or malformed.
func NewPlan(method string, original int, steps []Step) (*Plan, error) {
	layout, err := composeLayout(original, steps)
	if err != nil {
		return nil, err
	}
	return &Plan{Method: method, Original: original, Steps: steps, Layout: layout}, nil
}

// Removed returns the number of blocks the plan removes.
func (p *Plan) Removed() int {
	return p.Original - len(p.Layout)
}

// layoutTol is the tolerance of Validate on weights.
const layoutTol = 1e-9

// Validate checks that the plan is consistent: at least one block remains,
// every step is well formed and in range for the blocks current at that
// point, fusions are of adjacent blocks with λ in [0, 1], the Layout equals
// the one the steps produce (weights within 1e-9), every original block is
// used at most once, and each output block's weights are in [0, 1] and sum
// to 1 within 1e-9. The error wraps ErrPlan.
func (p *Plan) Validate() error {
	want, err := composeLayout(p.Original, p.Steps)
	if err != nil {
		return err
	}
	if len(p.Layout) != len(want) {
		return fmt.Errorf("%w: layout has %d output blocks, steps give %d", ErrPlan, len(p.Layout), len(want))
	}
	seen := make([]bool, p.Original)
	for o, ws := range p.Layout {
		if len(ws) != len(want[o]) {
			return fmt.Errorf("%w: output block %d has %d parts, steps give %d", ErrPlan, o, len(ws), len(want[o]))
		}
		var sum float64
		for i, w := range ws {
			if w.Block != want[o][i].Block || !(math.Abs(w.W-want[o][i].W) <= layoutTol) {
				return fmt.Errorf("%w: output block %d part %d is %v, steps give %v", ErrPlan, o, i, w, want[o][i])
			}
			if w.Block < 0 || w.Block >= p.Original || seen[w.Block] {
				return fmt.Errorf("%w: original block %d used twice or out of range", ErrPlan, w.Block)
			}
			if !(w.W >= -layoutTol && w.W <= 1+layoutTol) {
				return fmt.Errorf("%w: output block %d weight %v not in [0, 1]", ErrPlan, o, w.W)
			}
			seen[w.Block] = true
			sum += w.W
		}
		if !(math.Abs(sum-1) <= layoutTol) {
			return fmt.Errorf("%w: output block %d weights sum to %v", ErrPlan, o, sum)
		}
	}
	return nil
}

// composeLayout applies steps to the identity layout of original blocks.
func composeLayout(original int, steps []Step) ([][]Weighted, error) {
	if original < 1 {
		return nil, fmt.Errorf("%w: %d original blocks", ErrPlan, original)
	}
	if len(steps) >= original {
		return nil, fmt.Errorf("%w: %d steps remove every one of %d blocks", ErrPlan, len(steps), original)
	}
	cur := make([][]Weighted, original)
	for i := range cur {
		cur[i] = []Weighted{{Block: i, W: 1}}
	}
	for s, st := range steps {
		b := st.Blocks[0]
		if b < 0 || b >= len(cur) {
			return nil, fmt.Errorf("%w: step %d: block %d not in [0, %d)", ErrPlan, s, b, len(cur))
		}
		if math.IsNaN(st.Similarity) || math.IsInf(st.Similarity, 0) {
			return nil, fmt.Errorf("%w: step %d: similarity %v", ErrPlan, s, st.Similarity)
		}
		switch st.Kind {
		case StepDrop:
			cur = append(cur[:b], cur[b+1:]...)
		case StepFuse:
			if st.Blocks[1] != b+1 || b+1 >= len(cur) {
				return nil, fmt.Errorf("%w: step %d: blocks %d and %d are not adjacent current blocks", ErrPlan, s, b, st.Blocks[1])
			}
			lam := st.Lambda
			if !(lam >= 0 && lam <= 1) {
				return nil, fmt.Errorf("%w: step %d: lambda %v not in [0, 1]", ErrPlan, s, lam)
			}
			f := make([]Weighted, 0, len(cur[b])+len(cur[b+1]))
			for _, w := range cur[b] {
				f = append(f, Weighted{Block: w.Block, W: lam * w.W})
			}
			for _, w := range cur[b+1] {
				f = append(f, Weighted{Block: w.Block, W: (1 - lam) * w.W})
			}
			cur[b] = f
			cur = append(cur[:b+1], cur[b+2:]...)
		default:
			return nil, fmt.Errorf("%w: step %d: unknown kind %d", ErrPlan, s, int(st.Kind))
		}
	}
	return cur, nil
}

// String formats the plan for a dry run: a header, one line per step, and
// the output blocks that differ from the original ones, e.g.
//
//	mka: 32 -> 30 blocks (2 removed)
//	  1. blk 30 + blk 31 -> 30 (λ=0.62, S=0.91)
//	  2. blk 3 + blk 4 -> 3 (λ=0.55, S=0.88)
//	  layout:
//	    out 3 = 0.550·blk 3 + 0.450·blk 4
//	    out 4..28 = blk 5..29
//	    out 29 = 0.620·blk 30 + 0.380·blk 31
//
// Block numbers in steps are current indices (after the earlier steps);
// numbers in the layout are original block numbers.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d -> %d blocks (%d removed)\n", p.Method, p.Original, len(p.Layout), p.Removed())
	for i, st := range p.Steps {
		fmt.Fprintf(&b, "  %d. ", i+1)
		switch st.Kind {
		case StepFuse:
			fmt.Fprintf(&b, "blk %d + blk %d -> %d (λ=%.2f, S=%.2f)\n", st.Blocks[0], st.Blocks[1], st.Blocks[0], st.Lambda, st.Similarity)
		case StepDrop:
			if st.Similarity != 0 {
				fmt.Fprintf(&b, "drop blk %d (S=%.2f)\n", st.Blocks[0], st.Similarity)
			} else {
				fmt.Fprintf(&b, "drop blk %d\n", st.Blocks[0])
			}
		default:
			fmt.Fprintf(&b, "%v %v\n", st.Kind, st.Blocks)
		}
	}
	var lines []string
	for o := 0; o < len(p.Layout); {
		ws := p.Layout[o]
		if len(ws) != 1 {
			parts := make([]string, len(ws))
			for i, w := range ws {
				parts[i] = fmt.Sprintf("%.3f·blk %d", w.W, w.Block)
			}
			lines = append(lines, fmt.Sprintf("out %d = %s", o, strings.Join(parts, " + ")))
			o++
			continue
		}
		// A run of single blocks with a constant shift.
		shift := ws[0].Block - o
		end := o + 1
		for end < len(p.Layout) && len(p.Layout[end]) == 1 && p.Layout[end][0].Block-end == shift {
			end++
		}
		switch {
		case shift == 0:
		case end-o == 1:
			lines = append(lines, fmt.Sprintf("out %d = blk %d", o, o+shift))
		default:
			lines = append(lines, fmt.Sprintf("out %d..%d = blk %d..%d", o, end-1, o+shift, end-1+shift))
		}
		o = end
	}
	if len(lines) > 0 {
		b.WriteString("  layout:\n")
		for _, l := range lines {
			b.WriteString("    " + l + "\n")
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
