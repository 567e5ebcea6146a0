package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
)

// llamaPerplexityEnv names llama.cpp's perplexity tool for the llamacpp
// part of bench when it is not "llama-perplexity" on PATH.
const llamaPerplexityEnv = "MKA_LLAMA_PERPLEXITY"

// Windows and their length for the llamacpp part: 16 windows of up to 256
// tokens, as eval --ctx 256 and llama-perplexity -c 256 cut them.
const (
	benchLlamaWindows = 16
	benchLlamaCtx     = 256
)

// llamaCppPart times eval's perplexity loop (ppl.Measure, as eval runs it)
// and the calibration pass (calib.Run, as merge runs it) on the windows of
// a generated text against llama.cpp's own llama-perplexity on the same
// model, text, window length and threads, alternating, the best of rounds.
// Each tool's time is that of its decode-and-score loop (llama-perplexity:
// from "calculating perplexity" to "Final estimate" in its log), so model
// loading counts on neither side. Without the tool the part is skipped
// with a note.
func llamaCppPart(ctx context.Context, rep *Report, mp cgo.ModelParams, path, dir string, threads, rounds int) error {
	tool := llamaTool(rep, "llama-perplexity", llamaPerplexityEnv, "llama.cpp-tools-extra", Result{Name: "llamacpp.eval", Unit: "tok/s"})
	if tool == "" {
		return nil
	}
	m, err := cgo.LoadModel(path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	n := min(benchLlamaCtx, m.NCtxTrain())
	text, chunks, err := benchLlamaText(m, n)
	if err != nil {
		return err
	}
	textPath := filepath.Join(dir, "bench-llamacpp.txt")
	if err := os.WriteFile(textPath, []byte(text), 0o644); err != nil {
		return err
	}
	defer os.Remove(textPath)

	var theirs, eval, cal []float64
	var theirPPL, ourPPL float64
	for r := range rounds {
		steps := []string{"llama-perplexity", "eval", "calibration"}
		steps = append(steps[r%3:], steps[:r%3]...)
		for _, s := range steps {
			if err := ctx.Err(); err != nil {
				return err
			}
			switch s {
			case "llama-perplexity":
				tps, p, err := runLlamaPerplexity(ctx, tool, path, textPath, n, threads)
				if err != nil {
					return err
				}
				theirs, theirPPL = append(theirs, tps), p
			case "eval":
				res, err := ppl.Measure(m, text, ppl.Options{Context: ctx, Ctx: n, MaxWindows: benchLlamaWindows, Threads: threads, BatchTokens: 512})
				if err != nil {
					return err
				}
				eval, ourPPL = append(eval, float64(res.Tokens)/res.Seconds), res.PPL
			default:
				res, err := calib.Run(m, chunks, calib.Options{Context: ctx, Threads: threads, BatchTokens: 512})
				if err != nil {
					return err
				}
				cal = append(cal, res.TokPerSec)
			}
		}
		progress.Printf("bench: llamacpp round %d/%d: llama-perplexity %.1f tok/s, eval %.1f tok/s, calibration %.1f tok/s\n",
			r+1, rounds, theirs[r], eval[r], cal[r])
	}
	what := fmt.Sprintf("%d windows of %d tokens, %d threads", len(chunks), n, threads)
	rep.add(Result{Name: "llamacpp.perplexity", Value: best(theirs), Unit: "tok/s", Samples: theirs,
		Note: fmt.Sprintf("%s, %s (PPL %.4f)", tool, what, theirPPL)})
	rep.add(Result{Name: "llamacpp.eval", Value: best(eval), Unit: "tok/s", Samples: eval,
		BaselineName: "llamacpp.perplexity", BaselineValue: best(theirs), Goal: 0.9,
		Note: fmt.Sprintf("eval's perplexity loop, same windows (PPL %.4f)", ourPPL)})
	rep.add(Result{Name: "llamacpp.calibration", Value: best(cal), Unit: "tok/s", Samples: cal,
		BaselineName: "llamacpp.perplexity", BaselineValue: best(theirs), Goal: 0.9,
		Note: "the calibration pass (capture hook) over the same windows"})
	return nil
}

// llamaTool returns the path of llama.cpp's tool name: $env, or name on
// PATH. Without it, it adds row with a note saying it was skipped, why,
// and which Debian package has the tool, and returns "".
func llamaTool(rep *Report, name, env, debianPackage string, row Result) string {
	tool, err := exec.LookPath(cmp.Or(os.Getenv(env), name))
	if err != nil {
		row.Note = fmt.Sprintf("skipped: %s not found (%v; Debian's %s has it, or set %s)", name, err, debianPackage, env)
		progress.Printf("bench: %s %s\n", row.Name, row.Note)
		rep.add(row)
		return ""
	}
	return tool
}

// benchLlamaText returns a text of random lower-case words that tokenizes
// to at least benchLlamaWindows windows of n tokens, and those windows as
// eval cuts them (BOS first), for the calibration pass.
func benchLlamaText(m *cgo.Model, n int) (string, [][]int32, error) {
	words := strings.Fields("the a little girl boy dog cat sun tree house went saw played ran happy big red blue and with to in on was said")
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	for {
		for range 2000 {
			sb.WriteString(words[r.IntN(len(words))])
			sb.WriteString(map[int]string{0: ". ", 1: ", "}[r.IntN(10)] + " ")
		}
		toks, err := m.Tokenize(sb.String(), m.AddBOS(), false)
		if err != nil {
			return "", nil, err
		}
		if len(toks) >= benchLlamaWindows*n {
			bos := int32(-1)
			if m.AddBOS() {
				bos = m.BOS()
			}
			chunks, err := runner.Chunk(toks, n, benchLlamaWindows, bos)
			return sb.String(), chunks, err
		}
	}
}

// llamaLogLine is a message of llama.cpp's log with its timestamp,
// minutes.seconds.milliseconds.microseconds since the start, and level
// letter. Not anchored at a line start: the tool's stdout (the running
// PPL values) and its log share the pipe and may meet inside a line.
var llamaLogLine = regexp.MustCompile(`(\d+)\.(\d\d)\.(\d\d\d)\.(\d\d\d) [A-Z] ([^\n]*)`)

// llamaRunningPPL is llama-perplexity's running estimate after window k,
// "[k]PPL,", on its stdout.
var llamaRunningPPL = regexp.MustCompile(`\[\d+\]([0-9.]+),`)

// runLlamaPerplexity runs llama-perplexity on the first benchLlamaWindows
// windows of text and returns the tokens it decoded per second of its
// decode-and-score loop, and the PPL it printed. The loop runs from the
// log's "calculating perplexity" line to its "Final estimate" line; the
// log is written by a thread of its own, and at exit its last lines are
// sometimes lost, so without that line the loop ends when the process
// does (the timestamps count from its start) and the PPL is the last
// running estimate.
func runLlamaPerplexity(ctx context.Context, tool, model, text string, n, threads int) (tokPerSec, perplexity float64, err error) {
	args := []string{"-m", model, "-f", text, "-c", fmt.Sprint(n), "-t", fmt.Sprint(threads), "--chunks", fmt.Sprint(benchLlamaWindows)}
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	end := time.Since(t0).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		return 0, 0, fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, lastLine(string(out)))
	}
	start, chunks := -1.0, 0
	for _, g := range llamaLogLine.FindAllStringSubmatch(string(out), -1) {
		t := llamaLogTime(g[1:5])
		msg := g[5]
		if _, after, ok := strings.Cut(msg, "calculating perplexity over "); ok {
			start = t
			chunks, _ = strconv.Atoi(strings.Fields(after)[0])
		}
		if _, after, ok := strings.Cut(msg, "Final estimate: PPL = "); ok {
			end = t
			perplexity, _ = strconv.ParseFloat(strings.Fields(after)[0], 64)
		}
	}
	if r := llamaRunningPPL.FindAllStringSubmatch(string(out), -1); perplexity == 0 && len(r) > 0 {
		perplexity, _ = strconv.ParseFloat(r[len(r)-1][1], 64)
	}
	if chunks == 0 || end <= start || perplexity == 0 {
		return 0, 0, errors.New(tool + ": no timed perplexity run in its output (want a timestamped \"calculating perplexity over N chunks\" line and a PPL): " + lastLine(string(out)))
	}
	return float64(chunks*n) / (end - start), perplexity, nil
}

// llamaLogTime turns a log timestamp's fields into seconds.
func llamaLogTime(f []string) float64 {
	v := make([]float64, 4)
	for i, s := range f {
		v[i], _ = strconv.ParseFloat(s, 64)
	}
	return v[0]*60 + v[1] + v[2]/1e3 + v[3]/1e6
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
