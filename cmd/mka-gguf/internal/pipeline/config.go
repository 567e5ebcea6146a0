package pipeline

import (
	"context"
	"fmt"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Config configures a search or the application of a fixed plan.
//
// The search decodes one chunk at a time whatever the calibration's batch:
// its context's logits and compute buffers are then half those of two.
type Config struct {
	Context context.Context
	Threads int
	// Align folds the least-squares alignment into the block before each
	// removed one (false: plain removal, scored the same way).
	Align bool
	// Rho is the relative ridge of the alignment (merge.AlignStats.Solve).
	Rho float64
	// Candidates is how many of the filter's best candidates are scored on
	// the held-back text at each step (at least 1).
	Candidates int
	// ScoreAll scores every candidate on the held-back text (to measure the
	// filter's agreement with the held-back loss).
	ScoreAll bool
	// MaxStatsBytes bounds the memory of the alignment statistics of one
	// pass (3·d²·8 bytes per candidate); candidates beyond it are the
	// ones with the lowest Block Influence first. 0: 1 GiB.
	MaxStatsBytes int64
	// StreamBytes bounds the alignment chunks' streams kept for the next
	// pass to start on (reuse.go; at least one is kept): the merge gives
	// them the memory the healing stage holds only later.
	StreamBytes int64
	// Original, when set, is the unmodified model (loaded read-only): the
	// alignment target H is then its output at the removed block's depth
	// (l_out of the same loaded block), not the merged-so-far model's, so
	// that each step also corrects the error of the steps before it. It
	// costs one more decode of every alignment batch.
	Original *cgo.Model
	// Similarity, when set, is the initial NPIB similarity between loaded
	// blocks, recorded for each candidate.
	Similarity func(a, b int) float64
	// InitialBI, when set, is each loaded block's Block Influence from the
	// calibration pass: it picks the first step's candidates when
	// MaxStatsBytes does not hold all of them.
	InitialBI []float64
	// Prefill, when set and complete, is the first step's alignment pass,
	// made during the calibration pass (NewPrefill); the alignment chunks
	// must be its AlignChunks.
	Prefill *Prefill
	// Race stops scoring a candidate on the held-back text once it cannot
	// beat the best candidate by more than raceTolerance: when, after at
	// least raceMinChunks chunks, its mean excess loss over the best,
	// paired by chunk, is above −raceTolerance by more than raceZ standard
	// errors (heldScore.cannotWin). With more than raceKeep candidates the
	// round has two stages (Searcher.round). The healing stage races each
	// refit against the model healed so far (significantly worse: out).
	// ScoreAll turns it off.
	Race bool
	// WholeDecodes scores every held-back candidate with decodes of the
	// whole model; by default a candidate's decodes start at the first
	// block it changes, on the stream captured entering it (the same
	// logits, fewer blocks run: Searcher.captureHeld).
	WholeDecodes bool
	// Quality makes the search compare the merged model with the loaded
	// model as it was before the search (IN) on the held-back chunks, as
	// kld.CompareReference does with QualityTopK tokens kept (0: all),
	// from decodes the rounds make anyway: IN's distributions from step
	// 1's held-back decodes, run to the logits, and the merged model's from
	// the last round's winner (Result.Quality).
	Quality     bool
	QualityTopK int
	// ChunkSeconds, when known, is the time one calibration chunk took to
	// decode through every block (no logits): the progress lines' ETA
	// predicts an alignment pass from it before one is measured.
	ChunkSeconds float64
	// Heal runs the healing stage after the search (Searcher.Heal): later
	// blocks' ffn_down refitted to Reference's stream, ridge HealRho.
	Heal      bool
	HealRho   float64
	Reference *cgo.Model
}

// Candidate is one way to remove a block at one step, and what the cheap
// signals and (for the best few) the held-back loss said about it.
type Candidate struct {
	// Drop is the current block removed; the block before it (Drop−1)
	// survives and carries the alignment. Run, when set, is the number of
	// blocks removed from Drop on (an architecture whose graph derives a
	// pattern from the block index removes runs of its period).
	Drop int `json:"drop"`
	Run  int `json:"run,omitempty"`
	// Residual is the alignment's in-sample relative residual
	// ‖X T − (H − F)‖² / ‖H − F‖² (the filter's score with alignment).
	Residual float64 `json:"residual"`
	// Unaligned is the same without alignment (T = I).
	Unaligned float64 `json:"residual_unaligned"`
	// Stream and StreamUnaligned are the same errors relative to the
	// residual stream, ‖X T − (H − F)‖² / ‖H‖²: the filter's score with
	// and without alignment.
	Stream          float64 `json:"stream_residual"`
	StreamUnaligned float64 `json:"stream_residual_unaligned"`
	// BI is 1 − mean cos(input, output) of the removed block in the model
	// as merged so far; Angular is mean arccos(cos)/π.
	BI      float64 `json:"bi"`
	Angular float64 `json:"angular"`
	// NPIB is the initial similarity of the two loaded blocks (0 if
	// unknown).
	NPIB float64 `json:"npib"`
	// HeldNLL is the mean next-token loss on held-back text (NaN when the
	// filter did not send it to the final round); Held is the same for
	// JSON, absent when not scored.
	HeldNLL float64  `json:"-"`
	Held    *float64 `json:"heldback_nll,omitempty"`
	// RaceChunks is the number of held-back chunks scored before the
	// candidate lost the race (Config.Race; 0: scored in full), and
	// Partial its mean loss on them.
	RaceChunks int      `json:"race_chunks,omitempty"`
	Partial    *float64 `json:"heldback_nll_partial,omitempty"`
	Chosen     bool     `json:"chosen"`

	align *merge.Alignment
}

// StepReport records one step of the search.
type StepReport struct {
	Step       int         `json:"step"` // 1-based
	Drop       int         `json:"drop"`
	Run        int         `json:"run,omitempty"` // blocks removed from Drop on, when more than one
	Survivor   int         `json:"survivor"`      // -1 when block 0 was removed
	Residual   float64     `json:"residual"`
	Unaligned  float64     `json:"residual_unaligned"`
	Rho        float64     `json:"rho"` // relative: ρ_rel of merge.AlignStats.Solve
	Tokens     int         `json:"align_tokens"`
	HeldNLL    float64     `json:"heldback_nll"`
	Candidates []Candidate `json:"candidates,omitempty"`
	// FilterAgrees says whether each cheap signal's first choice equals the
	// held-back loss's (meaningful with ScoreAll).
	FilterAgrees map[string]bool `json:"filter_agrees,omitempty"`
	AlignSeconds float64         `json:"align_seconds"`
	ScoreSeconds float64         `json:"score_seconds"`
	// Prefilled says the step's alignment statistics came from the
	// calibration pass (Prefill), not from a pass of its own.
	Prefilled bool `json:"prefilled,omitempty"`
	// Reused says the step's fits were an earlier pass's, still valid
	// (Searcher.Fast): the step decoded nothing.
	Reused bool `json:"reused_fits,omitempty"`
	// HeldBlocks counts the blocks the step's held-back decodes ran, one
	// per block and chunk (a whole decode of a chunk runs every loaded
	// block; one resumed at block b runs the blocks from b on; a capture
	// of the stream entering the candidates' blocks runs up to the
	// deepest), and HeldLogits the chunks decoded with the output layer.
	HeldBlocks int `json:"heldback_blocks"`
	HeldLogits int `json:"heldback_logits"`
	// PassBlocks counts the blocks the step's alignment pass ran, one per
	// block and chunk (a pass stops after its deepest candidate).
	PassBlocks int `json:"pass_blocks"`
}

// Result is the outcome: the plan (drops, in current-block steps), the
// alignment folded into each output block that has one, and the report.
type Result struct {
	Plan  *merge.Plan
	Align map[int]*merge.Alignment
	Steps []StepReport
	// Quality is the merged model against the loaded one before the
	// search on the held-back chunks (Config.Quality; nil without it).
	Quality *kld.Summary
	// Replace maps an output block to its refitted ffn_down (the tensor's
	// float32 values, edit.RewriteOptions.Replace), Heal reports the
	// healing stage (nil when it did not run).
	Replace map[int][]float32
	Heal    *HealReport
}

// blocks returns the number of blocks the candidate removes.
func (c *Candidate) blocks() int { return max(1, c.Run) }

// blocksName names the blocks the candidate removes: "blk 4" or "blk 4..5".
func (c *Candidate) blocksName() string {
	if n := c.blocks(); n > 1 {
		return fmt.Sprintf("blk %d..%d", c.Drop, c.Drop+n-1)
	}
	return fmt.Sprintf("blk %d", c.Drop)
}
