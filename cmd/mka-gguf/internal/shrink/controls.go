package shrink

// The controls that fix what a merge removes instead of letting the method
// choose: --blocks (exactly these original blocks), --plan (the plan of an
// earlier --dry-run report) and --target-size (the fewest blocks that make
// OUT fit), and the conversion between the plan's current block indices
// and the original ones.

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/merge"
)

// ParseBlocks parses --blocks: comma-separated original block indices,
// each once.
func ParseBlocks(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 0 {
			return nil, usage.Errorf("--blocks: %q is not a block index (0, 1, 2, ...)", strings.TrimSpace(f))
		}
		if slices.Contains(out, v) {
			return nil, usage.Errorf("--blocks: block %d is given twice", v)
		}
		out = append(out, v)
	}
	return out, nil
}

// ParseSize parses --target-size: a byte count with an optional unit, B,
// K/KiB, M/MiB, G/GiB (powers of 1024) or KB, MB, GB (powers of 1000),
// e.g. "40MiB", "1.5G", "123456".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult := map[string]float64{"": 1, "B": 1, "K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GIB": 1 << 30,
		"KB": 1e3, "MB": 1e6, "GB": 1e9}[strings.ToUpper(unit)]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || !(v > 0) || v*mult > math.MaxInt64/2 {
		return 0, usage.Errorf("--target-size %q is not a size: want a number of bytes with an optional unit (K, M, G or KiB, MiB, GiB: powers of 1024; KB, MB, GB: of 1000), e.g. 40MiB", s)
	}
	return int64(v * mult), nil
}

// blocksPlan is the plan that drops exactly the original blocks of L:
// from the last to the first, as the pruning baselines drop theirs, so
// that each step's current index is its original one.
func blocksPlan(blocks []int, L int) (*merge.Plan, error) {
	bs := slices.Clone(blocks)
	slices.Sort(bs)
	slices.Reverse(bs)
	steps := make([]merge.Step, len(bs))
	for i, b := range bs {
		steps[i] = merge.Step{Kind: merge.StepDrop, Blocks: [2]int{b, b}}
	}
	return merge.NewPlan("blocks", L, steps)
}

// OriginalBlocks returns, for each step of a plan over L blocks (whose
// indices are current: after the earlier steps), the original blocks it
// removes or fuses: the dropped block's, or every original block of the
// two fused ones.
func OriginalBlocks(L int, steps []merge.Step) ([][]int, error) {
	cur := make([][]int, L)
	for i := range cur {
		cur[i] = []int{i}
	}
	out := make([][]int, len(steps))
	for s, st := range steps {
		b := st.Blocks[0]
		switch {
		case b < 0 || b >= len(cur):
			return nil, fmt.Errorf("%w: step %d: block %d not in [0, %d)", merge.ErrPlan, s+1, b, len(cur))
		case st.Kind == merge.StepDrop:
			out[s] = cur[b]
			cur = slices.Delete(cur, b, b+1)
		case b+1 >= len(cur):
			return nil, fmt.Errorf("%w: step %d: block %d has no next block to fuse", merge.ErrPlan, s+1, b)
		default:
			out[s] = slices.Concat(cur[b], cur[b+1])
			cur[b] = out[s]
			cur = slices.Delete(cur, b+1, b+2)
		}
	}
	return out, nil
}

// Removed returns what a plan did to the original blocks, for people:
// "removed original blocks 3, 5, 6", "; fused 1+2" for each output block
// made of several.
func Removed(p *merge.Plan) string {
	used := make([]bool, p.Original)
	var fused []string
	for _, ws := range p.Layout {
		var parts []string
		for _, w := range ws {
			used[w.Block] = true
			parts = append(parts, strconv.Itoa(w.Block))
		}
		if len(ws) > 1 {
			fused = append(fused, strings.Join(parts, "+"))
		}
	}
	var gone []string
	for b, u := range used {
		if !u {
			gone = append(gone, strconv.Itoa(b))
		}
	}
	var s []string
	if len(gone) > 0 {
		s = append(s, "removed original blocks "+strings.Join(gone, ", "))
	}
	if len(fused) > 0 {
		s = append(s, "fused original blocks "+strings.Join(fused, ", "))
	}
	return strings.Join(s, "; ")
}

// planReport is what --plan reads of a merge report.
type planReport struct {
	InputSHA256 string       `json:"input_sha256"`
	Method      string       `json:"method"`
	Original    int          `json:"blocks_before"`
	Steps       []ReportStep `json:"steps"`
	Align       string       `json:"align"`
}

// loadPlan reads the plan of the merge report at path (--plan) for IN,
// whose blocks and SHA-256 it must match, and returns it with the report's
// alignment ("ls" or "none"); inSHA "" skips the hash check (Check: it
// comes again, hashed, in Run).
func loadPlan(path, in string, L int, inSHA string) (*merge.Plan, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("--plan: %w", err)
	}
	var r planReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, "", fmt.Errorf("%s: --plan: not a merge report (mka-gguf merge --dry-run --json-file): %v", path, err)
	}
	if r.Original == 0 || len(r.Steps) == 0 {
		return nil, "", fmt.Errorf("%s: --plan: no plan in it (want the report of mka-gguf merge --dry-run --json-file)", path)
	}
	if r.Original != L {
		return nil, "", fmt.Errorf("%s: --plan is for a model of %d blocks; %s has %d", path, r.Original, in, L)
	}
	if inSHA != "" && r.InputSHA256 != "" && r.InputSHA256 != inSHA {
		return nil, "", fmt.Errorf("%s: --plan was made for another model (sha256 %.12s…), not %s (%.12s…); make it with merge --dry-run from this one", path, r.InputSHA256, in, inSHA)
	}
	steps := make([]merge.Step, len(r.Steps))
	for i, st := range r.Steps {
		switch {
		case st.Kind == "drop" && st.Block != nil:
			steps[i] = merge.Step{Kind: merge.StepDrop, Blocks: [2]int{*st.Block, *st.Block}, Similarity: st.Similarity}
		case st.Kind == "fuse" && len(st.Blocks) == 2 && st.Lambda != nil:
			steps[i] = merge.Step{Kind: merge.StepFuse, Blocks: [2]int{st.Blocks[0], st.Blocks[1]}, Lambda: *st.Lambda, Similarity: st.Similarity}
		default:
			return nil, "", fmt.Errorf("%s: --plan: step %d is not a drop of a block or a fusion of two with a lambda", path, i+1)
		}
	}
	method := r.Method
	if method == "" {
		method = "plan"
	}
	p, err := merge.NewPlan(method, L, steps)
	if err != nil {
		return nil, "", fmt.Errorf("%s: --plan: %w", path, err)
	}
	return p, r.Align, nil
}
