package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/simd"
)

// add appends a result; with a baseline it computes the ratio and whether
// the goal is met.
func (r *Report) add(res Result) {
	if res.BaselineValue > 0 {
		res.Ratio = res.Value / res.BaselineValue
		if res.Goal > 0 {
			met := res.Ratio >= res.Goal
			if res.AtMost {
				met = res.Ratio <= res.Goal
			}
			res.GoalMet = &met
		}
	}
	r.Results = append(r.Results, res)
}

// best returns the largest value.
func best(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}

// decodeChunks returns the chunks of a decode measurement: one untimed
// decode, then whole decodes of 4 chunks of 128 tokens holding about tokens
// tokens; the same on every run.
func decodeChunks(m *cgo.Model, tokens int) [][]int32 {
	t := min(ChunkTokens, m.NCtxTrain())
	per := runner.SeqsPerDecode(t, BatchTokens)
	n := (1 + max(1, (tokens+per*t-1)/(per*t))) * per
	v := max(m.NVocab()-3, 1)
	chunks := make([][]int32, n)
	for i := range chunks {
		chunks[i] = make([]int32, t)
		for j := range chunks[i] {
			chunks[i][j] = int32(3 + (i*131+j*17)%v)
		}
		if bos := m.BOS(); bos >= 0 {
			chunks[i][0] = bos
		}
	}
	return chunks
}

// decodeClock measures steady-state throughput from runner's progress
// calls: from the end of the first decode to the end of the last. The first
// decode of a fresh llama.cpp context takes about twice as long as the
// others (buffers, graph), which would otherwise make tokens/s depend on how
// many decodes are timed.
type decodeClock struct {
	t           int // tokens per chunk
	start, end  time.Time
	first, last int // chunks done at start and end
}

func (c *decodeClock) tick(done int) {
	now := time.Now()
	if c.start.IsZero() {
		c.start, c.first = now, done
	}
	c.end, c.last = now, done
}

func (c *decodeClock) tokPerSec() (float64, error) {
	sec := c.end.Sub(c.start).Seconds()
	if c.last <= c.first || sec <= 0 {
		return 0, errors.New("decode: fewer than two decodes timed")
	}
	return float64((c.last-c.first)*c.t) / sec, nil
}

// slowRatio is how many times slower than this process an --against binary
// may be and still be measured in every round; at larger ratios a round's
// noise does not matter and a slow binary would take minutes.
const slowRatio = 4

// decode measures bare decode and calibration (decode + capture) on
// the same chunks, alternating, and each --against binary in between.
func decode(ctx context.Context, rep *Report, mp cgo.ModelParams, path string, threads, tokens, rounds int, captureOnly bool, against []*againstSpec) error {
	m, err := cgo.LoadModel(path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	chunks := decodeChunks(m, tokens)
	t := len(chunks[0])
	rep.Decode = (len(chunks) - runner.SeqsPerDecode(t, BatchTokens)) * t
	bareRun := func() (float64, error) {
		c := decodeClock{t: t}
		_, err := runner.Run(m, chunks, runner.Options{Ctx: ctx, Threads: threads, BatchTokens: BatchTokens, Logits: true,
			Progress: func(done int, _ float64) { c.tick(done) }}, nil)
		if err != nil {
			return 0, err
		}
		return c.tokPerSec()
	}
	calibRun := func(keepLogits bool) (float64, error) {
		c := decodeClock{t: t}
		_, err := calib.Run(m, chunks, calib.Options{Context: ctx, Threads: threads, BatchTokens: BatchTokens,
			KeepLogits: keepLogits, Progress: func(done, _ int, _ float64) { c.tick(done) }})
		if err != nil {
			return 0, err
		}
		return c.tokPerSec()
	}
	tmp, err := os.MkdirTemp("", "mka-gguf-bench-against-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// bare: plain decode with logits; hook: the calibration hook on the
	// same graph (its own cost); capture: calibration as merge runs it,
	// which also skips the unused output layer.
	var bare, hook, capture []float64
	for r := range rounds {
		modes := []string{"bare", "hook", "capture"}
		if captureOnly {
			modes = []string{"capture"}
		}
		// Rotate the order so that a drift favours no mode.
		modes = append(modes[r%len(modes):], modes[:r%len(modes)]...)
		for _, mode := range modes {
			var v float64
			var err error
			switch mode {
			case "bare":
				if v, err = bareRun(); err == nil {
					bare = append(bare, v)
				}
			case "hook":
				if v, err = calibRun(true); err == nil {
					hook = append(hook, v)
				}
			default:
				if v, err = calibRun(false); err == nil {
					capture = append(capture, v)
				}
			}
			if err != nil {
				return err
			}
		}
		if captureOnly {
			progress.Printf("bench: decode round %d/%d: capture %.1f tok/s\n", r+1, rounds, capture[r])
		} else {
			progress.Printf("bench: decode round %d/%d: bare %.1f tok/s, hook %.1f tok/s, capture %.1f tok/s\n", r+1, rounds, bare[r], hook[r], capture[r])
		}
		for _, a := range against {
			if a.slow {
				continue
			}
			if err := a.run(ctx, path, threads, tmp); err != nil {
				return err
			}
			v := a.res.Samples[len(a.res.Samples)-1]
			a.slow = v*slowRatio < best(capture)
			more := ""
			if a.slow && r+1 < rounds {
				more = fmt.Sprintf(" (%.1fx slower: not measured again)", best(capture)/v)
			}
			progress.Printf("bench: decode round %d/%d: %s [%s]: capture %.1f tok/s%s\n", r+1, rounds, a.name, a.res.CPUVariant, v, more)
		}
	}
	const captureNote = "calibration: decode + capture hook, output layer skipped"
	if captureOnly {
		rep.add(Result{Name: "decode.capture", Value: best(capture), Unit: "tok/s", Samples: capture, Note: captureNote})
	} else {
		rep.add(Result{Name: "decode.bare", Value: best(bare), Unit: "tok/s", Samples: bare,
			Note: "llama.cpp decode with logits, no capture"})
		rep.add(Result{Name: "decode.hook", Value: best(hook), Unit: "tok/s", Samples: hook,
			BaselineName: "decode.bare", BaselineValue: best(bare), Goal: 0.95, Note: "capture hook on the same graph, logits too"})
		rep.add(Result{Name: "decode.capture", Value: best(capture), Unit: "tok/s", Samples: capture,
			BaselineName: "decode.bare", BaselineValue: best(bare), Goal: 0.95, Note: captureNote})
	}
	for _, a := range against {
		rep.Against = append(rep.Against, a.res)
		rep.add(Result{Name: "against." + a.name, Value: best(capture), Unit: "tok/s",
			BaselineName: a.name + ".decode.capture", BaselineValue: a.res.Capture,
			Note: fmt.Sprintf("calibration, this [%s] / %s [%s]", rep.CPUVariant, a.name, a.res.CPUVariant)})
	}
	return nil
}

// run runs one round of the other binary's decode benchmark and records
// its result.
func (a *againstSpec) run(ctx context.Context, model string, threads int, tmp string) error {
	out := filepath.Join(tmp, a.name+".json")
	args := append(slices.Clone(a.pre), "--quiet", "bench", "--only", "decode", "--capture-only", "--model", model,
		"--rounds", "1", "--decode-tokens", fmt.Sprint(a.tokens), "--threads", fmt.Sprint(threads), "--json-file", out)
	cmd := exec.CommandContext(ctx, a.bin, args...)
	// The other binary chooses its own CPU code unless pre forces one.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, simd.CPUVariantEnv+"=") })
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("--against %s: %s %s: %v: %s", a.name, a.bin, strings.Join(args, " "), err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("--against %s: %w", a.name, err)
	}
	var o Report
	if err := json.Unmarshal(data, &o); err != nil {
		return fmt.Errorf("--against %s: %s: %w", a.name, out, err)
	}
	var capture float64
	for _, r := range o.Results {
		if r.Name == "decode.capture" {
			capture = r.Value
		}
	}
	if capture <= 0 {
		return fmt.Errorf("--against %s: %s reported no decode.capture result", a.name, out)
	}
	a.res.Name, a.res.Bin, a.res.Args = a.name, a.bin, args
	a.res.Version, a.res.CPU, a.res.CPUVariant, a.res.CPUReason, a.res.Tokens = o.Version, o.CPU, o.CPUVariant, o.CPUReason, o.Decode
	a.res.Capture = max(a.res.Capture, capture)
	a.res.Samples = append(a.res.Samples, capture)
	return nil
}
