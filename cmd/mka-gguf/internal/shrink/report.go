package shrink

import (
	"fmt"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Report is what a merge did (the merge command's --json and --json-file),
// in the schema of package report.
type Report struct {
	report.Head
	DryRun bool `json:"dry_run"`
	report.In
	report.Out
	Quant  string `json:"quant,omitempty"`
	Method Method `json:"method"`
	Align  string `json:"align"`
	// Original and Remaining are the block counts; RemovedBlocks the
	// original indices of the blocks that are gone (dropped, or fused
	// into their neighbour).
	Original      int                   `json:"blocks_before"`
	Remaining     int                   `json:"blocks_after"`
	RemovedBlocks []int                 `json:"removed_blocks"`
	Steps         []ReportStep          `json:"steps"`
	Layout        [][]merge.Weighted    `json:"layout"`
	Search        []pipeline.StepReport `json:"search,omitempty"`
	// InHeldNLL is IN's mean loss on the held-back text the search scores
	// its candidates on (nats per token), beside Search's heldback_nll.
	InHeldNLL     float64 `json:"input_heldback_nll,omitempty"`
	SearchSeconds float64 `json:"search_seconds,omitempty"`
	// Heal is the healing stage's record: the blocks whose ffn_down was
	// refitted and the held-back loss before and after.
	Heal        *pipeline.HealReport `json:"heal,omitempty"`
	Calibration *report.Calibration  `json:"calibration,omitempty"`
	// Quality is OUT against IN (base) on held-back calibration text.
	Quality *report.Quality `json:"quality,omitempty"`
	Gate    *Gate           `json:"quality_gate,omitempty"`
	// BytesAfter is OUT's size; PredictedBytes its size predicted from
	// IN's metadata before any work (the size check's, --target-size's).
	BytesBefore    int64   `json:"bytes_before"`
	BytesAfter     int64   `json:"bytes_after,omitempty"`
	PredictedBytes int64   `json:"predicted_bytes"`
	BitsPerWeight  float64 `json:"bits_per_weight,omitempty"`
	// Imatrix is where the importance matrix of Quant came from: merged,
	// original or the --imatrix file.
	Imatrix string  `json:"imatrix,omitempty"`
	Seconds float64 `json:"seconds"`
}

// ReportStep is one plan step as reports record it: a drop names the
// dropped block, a fusion its two blocks and λ, the weight of the first;
// both as current indices (after the earlier steps), and OriginalBlocks
// as IN's.
type ReportStep struct {
	Step           int      `json:"step"` // 1-based, as printed
	Kind           string   `json:"kind"` // "drop" or "fuse"
	Block          *int     `json:"block,omitempty"`
	Blocks         []int    `json:"blocks,omitempty"`
	Lambda         *float64 `json:"lambda,omitempty"`
	OriginalBlocks []int    `json:"original_blocks"`
	Similarity     float64  `json:"similarity,omitempty"`
}

// Gate is the quality gate's outcome (--max-kld).
type Gate struct {
	MaxKLD float64 `json:"max_kld"`
	Passed bool    `json:"passed"`
}

// GateError is a merge whose closing quality check failed the quality
// gate: OUT is not kept (the command exits with status 3).
type GateError struct {
	KLD, Max float64
}

func (e *GateError) Error() string {
	return fmt.Sprintf("quality gate failed: mean KLD %.4f of OUT against IN is above --max-kld %g; OUT was not written", e.KLD, e.Max)
}

// reportSteps converts the steps of p for a report.
func reportSteps(p *merge.Plan) ([]ReportStep, error) {
	orig, err := OriginalBlocks(p.Original, p.Steps)
	if err != nil {
		return nil, err
	}
	out := make([]ReportStep, len(p.Steps))
	for i, s := range p.Steps {
		r := ReportStep{Step: i + 1, Kind: s.Kind.String(), Similarity: s.Similarity, OriginalBlocks: orig[i]}
		if s.Kind == merge.StepDrop {
			b := s.Blocks[0]
			r.Block = &b
		} else {
			l := s.Lambda
			r.Blocks, r.Lambda = []int{s.Blocks[0], s.Blocks[1]}, &l
		}
		out[i] = r
	}
	return out, nil
}

// removedBlocks returns the original blocks that are gone, in order: those
// no output block keeps, and of a fusion all but its heaviest block (the
// first of equal weights), so that len = blocks_before − blocks_after.
func removedBlocks(p *merge.Plan) []int {
	kept := make([]bool, p.Original)
	for _, ws := range p.Layout {
		kept[merge.Heaviest(ws).Block] = true
	}
	out := []int{}
	for b, k := range kept {
		if !k {
			out = append(out, b)
		}
	}
	return out
}
