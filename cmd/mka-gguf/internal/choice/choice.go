// Package choice scores multiple-choice tasks the way llama.cpp's
// llama-perplexity --hellaswag does: every ending is appended to the context
// (context + " " + ending, tokenized as one text with BOS), the tokens the
// context tokens the endings share are decoded once for all of them (one
// sequence per ending, the shared tokens belonging to every sequence), and
// each ending is scored by the log-probability of its own tokens given
// everything before them. (llama.cpp stops scoring at the longest prefix
// the endings share, so words the endings have in common are not scored;
// here they are, as in lm-evaluation-harness.)
//
// Accuracy is reported two ways: raw, the ending with the highest summed
// log-probability, and length-normalised, the highest mean log-probability
// per token (llama.cpp's acc_norm). Summed log-probabilities favour short
// endings, since every extra token only lowers the sum; the mean does not.
package choice

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
)

// Task is one multiple-choice question: a context, candidate endings and
// the index of the right one.
type Task struct {
	Context string   `json:"context"`
	Endings []string `json:"endings"`
	Label   int      `json:"label"`
}

// Load reads tasks from path, in either format:
//
//   - JSONL: one {"context": …, "endings": […], "label": k} per line;
//   - llama.cpp's HellaSwag text (what llama-perplexity --hellaswag reads):
//     six lines per task, the context, the label, then four endings.
//
// Every task needs at least two endings and a label among them.
func Load(path string) ([]Task, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tasks []Task
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		tasks, err = parseJSONL(data)
	} else {
		tasks, err = parseHellaSwag(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("%s: no tasks", path)
	}
	return tasks, nil
}

func parseJSONL(data []byte) ([]Task, error) {
	var tasks []Task
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var t Task
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		tasks = append(tasks, t)
	}
	return tasks, sc.Err()
}

func parseHellaSwag(data []byte) ([]Task, error) {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines)%6 != 0 {
		return nil, fmt.Errorf("%d lines is not a multiple of 6 (HellaSwag text: context, label, four endings per task; or JSONL)", len(lines))
	}
	var tasks []Task
	for i := 0; i < len(lines); i += 6 {
		label, err := strconv.Atoi(strings.TrimSpace(lines[i+1]))
		if err != nil {
			return nil, fmt.Errorf("line %d: label %q is not a number", i+2, lines[i+1])
		}
		t := Task{Context: strings.TrimRight(lines[i], "\r"), Label: label}
		for _, e := range lines[i+2 : i+6] {
			t.Endings = append(t.Endings, strings.TrimRight(e, "\r"))
		}
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

func (t Task) check() error {
	if len(t.Endings) < 2 {
		return fmt.Errorf("%d endings, want at least 2", len(t.Endings))
	}
	if t.Label < 0 || t.Label >= len(t.Endings) {
		return fmt.Errorf("label %d outside the %d endings", t.Label, len(t.Endings))
	}
	return nil
}

// Join is how an ending follows its context: separated by one space, as
// llama.cpp does, unless one side already has the whitespace.
func Join(context, ending string) string {
	if context == "" || strings.HasSuffix(context, " ") || strings.HasSuffix(context, "\n") || strings.HasPrefix(ending, " ") {
		return context + ending
	}
	return context + " " + ending
}

// Options configures Score.
type Options struct {
	Context  context.Context // checked between decodes (Ctrl-C)
	Threads  int             // 0: the number of CPUs
	Tokens   int             // tokens per decode (0: 1024; at least the largest task)
	MaxTasks int             // score only the first MaxTasks tasks (0: all)
	Progress func(done, total int)
}

// TaskScore is one task's result.
type TaskScore struct {
	LogProb  []float64 `json:"logprob"`   // summed log-probability of each ending, nats
	Tokens   []int     `json:"tokens"`    // tokens of each ending scored
	Pred     int       `json:"pred"`      // highest summed log-probability
	PredNorm int       `json:"pred_norm"` // highest mean log-probability per token
	Label    int       `json:"label"`
}

// Result is a multiple-choice measurement. Percentages are 0–100 with
// their standard errors sqrt(p(1−p)/(n−1)), as llama.cpp reports them.
type Result struct {
	Tasks      int         `json:"tasks"`
	Acc        float64     `json:"acc_pct"` // raw: highest summed log-probability
	AccErr     float64     `json:"acc_pct_stderr"`
	AccNorm    float64     `json:"acc_norm_pct"` // length-normalised: highest mean per token
	AccNormErr float64     `json:"acc_norm_pct_stderr"`
	Chance     float64     `json:"chance_pct"` // mean of 1/endings
	Tokens     int         `json:"tokens"`     // tokens decoded
	TokPerSec  float64     `json:"tok_per_s"`
	Scores     []TaskScore `json:"scores,omitempty"`
}

// Decide returns the ending with the highest summed log-probability and
// the one with the highest mean log-probability per token (the first of
// equals).
func Decide(logProb []float64, tokens []int) (pred, predNorm int) {
	for e := range logProb {
		if logProb[e] > logProb[pred] {
			pred = e
		}
		if logProb[e]/float64(tokens[e]) > logProb[predNorm]/float64(tokens[predNorm]) {
			predNorm = e
		}
	}
	return pred, predNorm
}

// prepared is a tokenized task.
type prepared struct {
	seqs   [][]int32 // context + ending, per ending
	prefix int       // context tokens all seqs share (at least 1, at most every seq's length − 1)
	need   int       // tokens in the batch: prefix + the rest of every seq
}

func prepare(m *cgo.Model, t Task, i int) (prepared, error) {
	var p prepared
	for _, e := range t.Endings {
		toks, err := m.Tokenize(Join(t.Context, e), m.AddBOS(), false)
		if err != nil {
			return p, fmt.Errorf("task %d: %w", i+1, err)
		}
		p.seqs = append(p.seqs, toks)
	}
	// The shared prefix stops at the context's own tokens, so that words
	// the endings happen to share are scored in each of them.
	ctxToks, err := m.Tokenize(t.Context, m.AddBOS(), false)
	if err != nil {
		return p, fmt.Errorf("task %d: %w", i+1, err)
	}
	p.prefix = len(ctxToks)
	for _, s := range p.seqs {
		p.prefix = min(p.prefix, len(s)-1)
		for j := range p.prefix {
			if s[j] != p.seqs[0][j] {
				p.prefix = j
				break
			}
		}
	}
	if p.prefix < 1 {
		return p, fmt.Errorf("task %d: the endings share no context token (empty context and no BOS?)", i+1)
	}
	p.need = p.prefix
	for _, s := range p.seqs {
		p.need += len(s) - p.prefix
	}
	return p, nil
}

// Score scores every task with m.
func Score(m *cgo.Model, tasks []Task, opt Options) (Result, error) {
	if opt.MaxTasks > 0 && opt.MaxTasks < len(tasks) {
		tasks = tasks[:opt.MaxTasks]
	}
	if len(tasks) == 0 {
		return Result{}, errors.New("no tasks")
	}
	preps := make([]prepared, len(tasks))
	budget, maxSeqs := opt.Tokens, 0
	if budget <= 0 {
		budget = 1024
	}
	for i, t := range tasks {
		var err error
		if preps[i], err = prepare(m, t, i); err != nil {
			return Result{}, err
		}
		budget = max(budget, preps[i].need)
		maxSeqs = max(maxSeqs, len(t.Endings))
	}
	seqMax := min(256, max(64, maxSeqs))
	if maxSeqs > seqMax {
		return Result{}, fmt.Errorf("a task has %d endings; at most %d are supported", maxSeqs, seqMax)
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	ctx, err := cgo.NewContext(m, cgo.ContextParams{NCtx: budget, NBatch: budget, NSeqMax: seqMax, Threads: threads})
	if err != nil {
		return Result{}, err
	}
	defer ctx.Close()
	b := cgo.NewSharedBatch(budget, seqMax)
	defer b.Close()

	res := Result{Tasks: len(tasks), Scores: make([]TaskScore, len(tasks))}
	start := time.Now()
	seqIDs := make([]int, 0, seqMax)
	for i0 := 0; i0 < len(tasks); {
		if opt.Context != nil {
			if err := opt.Context.Err(); err != nil {
				return Result{}, err
			}
		}
		// Pack tasks [i0, i1) into one decode. at[i][e][j] is the batch
		// index of token j of ending e (for j < prefix: the shared one).
		b.Clear()
		i1, nseq := i0, 0
		var at [][][]int
		for i1 < len(tasks) && b.Len()+preps[i1].need <= budget && nseq+len(preps[i1].seqs) <= seqMax {
			p := preps[i1]
			seqIDs = seqIDs[:0]
			for e := range p.seqs {
				seqIDs = append(seqIDs, nseq+e)
			}
			shared := make([]int, p.prefix)
			for j := range p.prefix {
				shared[j] = b.Len()
				b.AddShared(p.seqs[0][j], j, seqIDs, j == p.prefix-1)
			}
			idx := make([][]int, len(p.seqs))
			for e, s := range p.seqs {
				idx[e] = append(idx[e], shared...)
				for j := p.prefix; j < len(s); j++ {
					idx[e] = append(idx[e], b.Len())
					b.Add(s[j], j, nseq+e, j < len(s)-1)
				}
			}
			at = append(at, idx)
			nseq += len(p.seqs)
			i1++
		}
		ctx.ClearMemory()
		if err := ctx.Decode(&b.Batch); err != nil {
			return Result{}, err
		}
		res.Tokens += b.Len()
		for i := i0; i < i1; i++ {
			p, ts := preps[i], &res.Scores[i]
			ts.Label = tasks[i].Label
			for e, s := range p.seqs {
				var lp float64
				for j := p.prefix; j < len(s); j++ {
					lp -= ppl.NLL(ctx.Logits(at[i-i0][e][j-1]), s[j])
				}
				ts.LogProb = append(ts.LogProb, lp)
				ts.Tokens = append(ts.Tokens, len(s)-p.prefix)
			}
			ts.Pred, ts.PredNorm = Decide(ts.LogProb, ts.Tokens)
		}
		i0 = i1
		if opt.Progress != nil {
			opt.Progress(i0, len(tasks))
		}
	}
	if s := time.Since(start).Seconds(); s > 0 {
		res.TokPerSec = float64(res.Tokens) / s
	}
	var right, rightNorm int
	for i, ts := range res.Scores {
		if ts.Pred == ts.Label {
			right++
		}
		if ts.PredNorm == ts.Label {
			rightNorm++
		}
		res.Chance += 100 / float64(len(tasks[i].Endings)) / float64(len(tasks))
	}
	res.Acc, res.AccErr = share(right, len(tasks))
	res.AccNorm, res.AccNormErr = share(rightNorm, len(tasks))
	return res, nil
}

// share returns k/n in percent and its standard error sqrt(p(1−p)/(n−1)).
func share(k, n int) (pct, stderr float64) {
	p := float64(k) / float64(n)
	if n > 1 {
		stderr = 100 * math.Sqrt(p*(1-p)/float64(n-1))
	}
	return 100 * p, stderr
}
