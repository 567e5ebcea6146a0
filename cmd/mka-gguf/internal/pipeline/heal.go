package pipeline

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// HealReport records the healing stage (Searcher.Heal).
type HealReport struct {
	// First is the first output block refitted: the one before the first
	// removal (the blocks before it compute what IN computes).
	First      int        `json:"first_block"`
	HeldBefore float64    `json:"heldback_nll_before"`
	HeldAfter  float64    `json:"heldback_nll_after"`
	Refits     []HealStep `json:"refits"`
	Rho        float64    `json:"rho"`
	Chunks     int        `json:"chunks"`
	Seconds    float64    `json:"seconds"`
	// SolveSeconds is the part of Seconds spent solving the refits'
	// normal equations (n_ff unknowns, n_embd right-hand sides: it grows
	// as n_ff³ where the decodes grow with the weights).
	SolveSeconds float64 `json:"solve_seconds"`
	// Skipped says why nothing was refitted (the model is as the search
	// left it).
	Skipped string `json:"skipped,omitempty"`
}

// HealStep is one block's refit.
type HealStep struct {
	Block  int `json:"block"`        // output block
	Loaded int `json:"loaded_block"` // the block of IN behind it
	// Target is the block of IN whose input (IN's residual stream) the
	// block's output is fitted to; n_layer: IN's final stream.
	Target  int     `json:"target"`
	HeldNLL float64 `json:"heldback_nll"`
	// Chunks is the held-back chunks scored before the refit lost the race
	// (0: scored in full).
	Chunks int  `json:"heldback_chunks,omitempty"`
	Kept   bool `json:"kept"`
}

// healSuffix is the tensor the healing stage refits.
const healSuffix = "ffn_down.weight"

// Heal re-aims the merged model's later blocks at IN (Config.Reference):
// for each output block from the one before the first removal on, front to
// back, its ffn_down W is refitted by weighted ridge least squares
// (merge.Ridge) on the block's FFN hidden activations a (ffn_down's input,
// captured from the model healed so far) so that its output F + W a
// matches IN's residual stream at the same depth H (IN's stream entering
// the block after the one the output block stands for):
//
//	W = argmin Σ_t w_t ‖W a_t − (H_t − F_t)‖² + ρ ‖W − W₀‖²,
//	w_t ∝ 1/‖H_t‖² (BOS rows 0), ρ = Config.HealRho · tr(AᵀWA)/n_ff,
//
// on the alignment chunks. A refit is kept only if it lowers the mean
// next-token loss on the held-back chunks. res gets the kept weights
// (Result.Replace) and the report (Result.Heal). Cost: the alignment chunks
// through the healed blocks about twice and through IN once, and one
// held-back decode from each refitted block on.
func (s *Searcher) Heal(res *Result) error {
	t0 := time.Now()
	rep := &HealReport{Rho: s.cfg.HealRho, Chunks: len(s.align), HeldBefore: math.NaN(), HeldAfter: math.NaN()}
	res.Heal = rep
	defer func() { rep.Seconds = time.Since(t0).Seconds() }()
	if why := s.healBlocked(); why != "" {
		rep.Skipped = why
		progress.Printf("healing skipped: %s\n", why)
		return nil
	}
	first, ok := s.firstGap()
	if !ok {
		rep.Skipped = "no block removed"
		return nil
	}
	rep.First = first
	h, err := s.newHealer(first)
	if err != nil {
		return err
	}
	defer h.close()
	s.quality.sum = nil
	err = h.run(rep, res)
	s.quality.ref = nil // (memory)
	if err != nil {
		return fmt.Errorf("healing: %w", err)
	}
	if len(res.Replace) > 0 {
		// The check of the model as healed, from the decodes that scored
		// its last kept refit (keepQuality); nil when not known.
		res.Quality = s.quality.sum
	}
	progress.Printf("healing: refitted ffn_down of %d of %d blocks, held-back loss %.4f → %.4f (%.1f s)\n",
		len(res.Replace), len(rep.Refits), rep.HeldBefore, rep.HeldAfter, time.Since(t0).Seconds())
	return nil
}

// healBlocked returns why the healing stage cannot run on this model
// ("" when it can).
func (s *Searcher) healBlocked() string {
	switch {
	case s.cfg.Reference == nil:
		return "no reference model"
	case len(s.held) == 0:
		return "no held-back text to decide on"
	case HealBlocked(s.e.arch) != "":
		return HealBlocked(s.e.arch)
	case !s.sess.resume || s.cfg.Reference.CanResume() != nil:
		return "llama.cpp cannot decode this architecture from a middle block"
	}
	return ""
}

// HealBlocked returns why the healing stage cannot run on a model of b's
// architecture and tensors ("" when it can, as far as the file tells: the
// loaded graph must still allow decodes from a middle block).
func HealBlocked(b *arch.Model) string {
	switch {
	case b.Arch.Align != arch.AlignFull: // a norm after ffn_down: not linear in W
		return fmt.Sprintf("architecture %s normalises ffn_down's output", b.Arch.Name)
	case !b.Has(healSuffix):
		return "the blocks have no " + healSuffix
	case b.Has("ffn_down.bias"):
		return "ffn_down has a bias"
	case b.Resume != arch.ResumeAll:
		return "llama.cpp cannot decode this architecture from a middle block"
	}
	return ""
}

// firstGap returns the first current block whose successor in the model is
// not its successor in IN (the block before the first removal).
func (s *Searcher) firstGap() (int, bool) {
	n := s.e.Blocks()
	for o := range n {
		if s.target(o) != s.e.Phys(o)+1 {
			return o, true
		}
	}
	return 0, false
}

// target returns the block of IN whose input current block o's output
// stands for: the loaded block of the next current block, or n_layer.
func (s *Searcher) target(o int) int {
	if o+1 < s.e.Blocks() {
		return s.e.Phys(o + 1)
	}
	return s.e.m.NLayer()
}

// Replace sets current block c's tensor suffix to the values v
// (edit.Replacement), tentatively.
func (e *Editor) Replace(c int, suffix string, v []float32) error {
	name := fmt.Sprintf("blk.%d.%s", e.phys[c], suffix)
	i, ok := e.f.Tensor(name)
	if !ok {
		return fmt.Errorf("%s: no tensor %s", e.f.Path, name)
	}
	b, err := replacementBytes(e, i, v)
	if err != nil {
		return err
	}
	return e.set(name, b)
}

// Values returns current block c's tensor suffix as float32 values, pending
// changes included.
func (e *Editor) Values(c int, suffix string) ([]float32, error) {
	name := fmt.Sprintf("blk.%d.%s", e.phys[c], suffix)
	i, ok := e.f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %s", e.f.Path, name)
	}
	raw, err := e.current(name)
	if err != nil {
		return nil, err
	}
	v := make([]float32, e.f.Tensors[i].Elements())
	if err := e.codec.Decode(e.f.Tensors[i].Type, raw, v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// decode runs chunks on sess (one chunk per decode) from loaded block
// from on, on the streams in entering it (nil: from the tokens), and stops
// after loaded block last (< 0: the whole model, logits included). got
// sees every captured tensor of chunk c, after (when set) every decode.
func (s *Searcher) decode(sess *runner.Session, chunks [][]int32, in [][]float32, from, last int,
	got func(c int, tn cgo.Tensor) bool, after func(c int, d *runner.Decoded) error) error {
	if k := sess.SeqsPerDecode(); k != 1 {
		return fmt.Errorf("healing: a session of %d chunks per decode", k)
	}
	c := 0
	hook := func(tn cgo.Tensor) bool { return got == nil || got(c, tn) }
	if err := sess.SetCapture(hook, last); err != nil {
		return err
	}
	next := func(d *runner.Decoded) error {
		var err error
		if after != nil {
			err = after(c, d)
		}
		c += d.Count
		return err
	}
	var err error
	if in == nil {
		err = sess.Run(s.cfg.Context, chunks, nil, next)
	} else {
		err = sess.RunFrom(s.cfg.Context, in, from, nil, next)
	}
	if cerr := sess.SetCapture(nil, -1); err == nil {
		err = cerr
	}
	return err
}

// outputs decodes chunks up to loaded block last (from block from, on in;
// nil: the tokens) and returns each chunk's output of block last.
func (s *Searcher) outputs(sess *runner.Session, chunks [][]int32, in [][]float32, from, last int) ([][]float32, error) {
	out := make([][]float32, len(chunks))
	var herr error
	err := s.decode(sess, chunks, in, from, last, func(c int, tn cgo.Tensor) bool {
		if tn.Kind == cgo.BlockOutput && tn.Layer == last {
			if tn.Cols != s.d {
				herr = fmt.Errorf("blk %d output has %d columns, want %d", last, tn.Cols, s.d)
				return false
			}
			out[c] = slices.Clone(tn.Data)
		}
		return true
	}, nil)
	if err == nil {
		err = herr
	}
	for c := range out {
		if err == nil && out[c] == nil {
			err = fmt.Errorf("blk %d output of chunk %d not captured", last, c)
		}
	}
	return out, err
}

// ReplaceTensors returns Replace by output tensor name, as
// edit.RewriteOptions.Replace takes it.
func (r *Result) ReplaceTensors() map[string][]float32 {
	if len(r.Replace) == 0 {
		return nil
	}
	out := map[string][]float32{}
	for o, v := range r.Replace {
		out[fmt.Sprintf("blk.%d.%s", o, healSuffix)] = v
	}
	return out
}
