package calib

import (
	"context"
	"fmt"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
)

// Spec is the calibration a command asks for: its text, how much of it
// and how it is decoded (the flags --calib, --samples, --ctx, --seed,
// --batch).
type Spec struct {
	File    string // calibration text; "" is the built-in set
	Samples int    // N chunks (points of each layer's manifold)
	Ctx     int    // T tokens per chunk, capped at the model's training context
	Seed    uint64 // order in which texts are drawn
	Batch   int    // tokens per decode
}

// DefaultSpec is the calibration of analyze, merge, compare and imatrix
// when no flag says otherwise: 128 chunks of 256 tokens of the built-in
// set, 512 tokens per decode.
func DefaultSpec() Spec { return Spec{Samples: 128, Ctx: 256, Seed: 1, Batch: 512} }

// ManifoldMin is the fewest samples a layer manifold (diffusion map) is
// computed from.
const ManifoldMin = 8

// Validate checks the numbers; manifold asks for at least ManifoldMin
// samples (the calibration feeds diffusion maps).
func (s Spec) Validate(manifold bool) error {
	if err := usage.AtLeast("ctx", s.Ctx, 8, "tokens"); err != nil {
		return err
	}
	if err := usage.AtLeast("samples", s.Samples, 1, "samples"); err != nil {
		return err
	}
	if manifold && s.Samples < ManifoldMin {
		return usage.Errorf("--samples %d is out of range: want ≥ %d (points of each layer's manifold)", s.Samples, ManifoldMin)
	}
	return usage.AtLeast("batch", s.Batch, 1, "tokens per decode")
}

// Load returns the samples of File or of the built-in set, and a name for
// messages.
func (s Spec) Load() ([]corpus.Sample, string, error) {
	if s.File != "" {
		samples, err := corpus.Load(s.File)
		return samples, s.File, err
	}
	return corpus.Default(), corpus.DefaultName, nil
}

// Texts is Load without the kinds.
func (s Spec) Texts() ([]string, string, error) {
	samples, name, err := s.Load()
	if err != nil {
		return nil, "", err
	}
	return corpus.Texts(samples), name, nil
}

// Chunks tokenizes texts into Samples chunks of Ctx tokens (at most the
// model's training context) drawn with seed; errors name source.
func (s Spec) Chunks(m *cgo.Model, texts []string, source string, seed uint64) ([][]int32, error) {
	chunks, err := Tokens(m, texts, s.Samples, min(s.Ctx, m.NCtxTrain()), seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return chunks, nil
}

// Observer is another pass over the calibration's decodes (the merge's
// first alignment pass): Options.Observe and ObserveBefore.
type Observer struct {
	Capture cgo.CaptureFunc
	Before  func(first, count int)
}

// Pass tokenizes texts (Chunks, with Seed) and runs the calibration pass on
// m with a progress bar. It also returns the chunks it decoded. observe,
// when set, is called with the chunks' length and number before the pass
// and may return another pass to run on the same decodes.
func (s Spec) Pass(ctx context.Context, m *cgo.Model, texts []string, source string, threads int, observe func(t, chunks int) *Observer) (*Result, [][]int32, error) {
	chunks, err := s.Chunks(m, texts, source, s.Seed)
	if err != nil {
		return nil, nil, err
	}
	t := min(s.Ctx, m.NCtxTrain())
	bar := progress.New("calibrate", s.Samples, "samples")
	opt := Options{Context: ctx, Samples: s.Samples, Ctx: t, Seed: s.Seed, Threads: threads, BatchTokens: s.Batch,
		Progress: func(done, total int, tps float64) {
			bar.Set(done, fmt.Sprintf("%.0f tok/s", tps))
		}}
	if observe != nil {
		if o := observe(t, len(chunks)); o != nil {
			opt.Observe, opt.ObserveBefore = o.Capture, o.Before
		}
	}
	res, err := Run(m, chunks, opt)
	bar.Done()
	if err != nil {
		return nil, nil, err
	}
	return res, chunks, nil
}
