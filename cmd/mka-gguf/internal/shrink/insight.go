package shrink

// What a person needs beside the numbers: IN's own loss on the held-back
// text the search scores on (so that a step's loss can be judged), and a
// warning when the calibration text is far from what IN was trained on.

import (
	"fmt"
	"math"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// probeChunks is how many calibration chunks checkDomain decodes.
const probeChunks = 4

// DomainPPL is the perplexity of IN on its calibration text above which
// the text is taken to be far from IN's domain (checkDomain).
const DomainPPL = 100

// meanLoss decodes chunks with IN (j.model, before any edit or after the
// search's Reset) and returns the mean next-token loss over every
// position, nats per token.
func (j *Job) meanLoss(chunks [][]int32) (float64, error) {
	var acc ppl.Accumulator
	_, err := runner.Run(j.model, chunks, runner.Options{Ctx: j.ctx, Threads: j.o.Threads, BatchTokens: j.o.Calib.Batch, Logits: true},
		func(d *runner.Decoded) error {
			for i := range d.Count {
				ch := chunks[d.First+i]
				for k := 0; k+1 < len(ch); k++ {
					acc.Add(d.Logits(i, k), ch[k+1])
				}
			}
			return nil
		})
	return acc.Mean(), err
}

// checkDomain warns when IN's perplexity on the calibration text is above
// DomainPPL: the blocks chosen on such text need not be the ones that
// matter for what IN is used for. Without held-back chunks it decodes a
// few calibration chunks; with them, the search's held-back text (whose
// loss, IN's, the step lines print beside each step's).
func (j *Job) checkDomain() error {
	if j.model == nil {
		return nil
	}
	chunks := j.probe
	if len(j.held) > 0 && !j.searchQuality() {
		chunks = j.held
	}
	if len(chunks) == 0 {
		return nil
	}
	loss, err := j.meanLoss(chunks)
	if err != nil {
		return err
	}
	if len(chunks) == len(j.held) && len(j.held) > 0 {
		j.inLoss = loss
	}
	p := math.Exp(loss)
	if p <= DomainPPL {
		return nil
	}
	text := "--calib " + j.o.Calib.File
	if j.o.Calib.File == "" {
		text = "the " + corpus.DefaultName
	}
	j.warn("IN's perplexity on %s is %.0f (above %d): the text is far from what %s was trained on, so the blocks chosen on it may not be those your use needs; give --calib FILE with text like its own (its training or task data)",
		text, p, DomainPPL, j.o.In)
	return nil
}

// searchQuality reports whether the search's own decodes give the closing
// quality check, and with it IN's held-back loss (Shrink's cfg.Quality).
func (j *Job) searchQuality() bool {
	return j.o.Method == MKA && !j.o.fixed() && j.checkQuality && j.o.Quant == ""
}

// heldLoss finds IN's held-back loss after the search when checkDomain
// did not: from the search's quality check (IN's perplexity on the same
// held-back tokens), or by decoding them with IN again.
func (j *Job) heldLoss(r *Result) error {
	if !math.IsNaN(j.inLoss) || len(j.held) == 0 || len(r.Steps) == 0 {
		return nil
	}
	if q := r.Quality; q != nil && q.BasePPL > 0 {
		j.inLoss = math.Log(q.BasePPL)
		return nil
	}
	if j.model == nil {
		return nil
	}
	loss, err := j.meanLoss(j.held)
	j.inLoss = loss
	return err
}

// InLoss is IN's mean loss on the held-back text, nats per token (NaN:
// not known).
func (j *Job) InLoss() float64 { return j.inLoss }

// warn prints a warning line (Options.Warn, or stderr).
func (j *Job) warn(format string, args ...any) {
	if j.o.Warn != nil {
		j.o.Warn(format, args...)
		return
	}
	progress.Printf("mka-gguf: warning: %s\n", fmt.Sprintf(format, args...))
}
