package shrink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/analysis"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/report"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Job holds what merges of one model need: the file, its blocks and, when
// a method needs them, the loaded model, the calibration pass and its
// analysis. compare makes many merges from one Job.
type Job struct {
	o Options
	// memory is the memory plan's lines, printed once the calibration text
	// is known to encode (so that a refused text stays one line).
	memory string
	ctx    context.Context // cancelled by Ctrl-C
	file   *gguf.File
	blocks *Blocks
	model  *cgo.Model // loaded only when calibration is needed
	res    *calib.Result
	an     *analysis.Analysis
	source string    // the calibration text's name in messages
	held   [][]int32 // held-back chunks for the λ search
	align  [][]int32 // calibration chunks for the alignment passes
	chunks [][]int32 // every calibration chunk (ReplaceMe's fit)
	// prefill is the search's first alignment pass, made during the
	// calibration pass (nil when the method has no search or no alignment).
	prefill *pipeline.Prefill
	// statsBytes bounds the alignment statistics of one pass: one block in
	// float32, at least minStatsBytes. The memory budget beyond the model
	// is two blocks in float32 and 256 MiB (issue 11); the other block is
	// the weight edits' working set and the alignments kept.
	statsBytes int64
	// streamBytes bounds the alignment chunks' streams a search keeps
	// (pipeline.Config.StreamBytes): one, or with healing the memory its
	// least-squares system takes only after the search; none for --fast.
	streamBytes int64
	ref         *kld.Reference // IN's distributions for the quality check (keepReference)
	// checkQuality: the closing quality check runs (OUT is written and
	// CheckQuality is set); the search may make it (Shrink).
	checkQuality bool
	// probe are a few calibration chunks for checkDomain.
	probe [][]int32
	// inLoss is IN's mean loss on the held-back chunks, nats per token
	// (NaN: not known).
	inLoss float64
	phases *progress.Phases // Run's; nil in compare and bench
}

// Needs says what Prepare does beyond opening IN.
type Needs struct {
	Calib   bool // the calibration pass and its analysis
	Held    bool // held-back chunks for the λ search (Options.Holdout of the text)
	Edit    bool // the model loaded with writable weights, alignment chunks
	Prefill bool // the search's first alignment pass made during the calibration pass
	// Phases numbers the phase lines (Run's; nil: none): the first is
	// printed once the calibration text is read and tokenized, so that a
	// text refused comes alone.
	Phases *progress.Phases
}

// needs is what the merge of o needs.
func (o *Options) needs() Needs {
	search := o.Method == MKA && o.Lambda == LambdaSearch
	return Needs{Calib: o.calibrates(), Held: search && !o.Fast, Edit: o.edits(), Prefill: search && o.align()}
}

// Close releases the model and the file.
func (j *Job) Close() {
	j.prefill.Close()
	j.model.Close()
	if j.file != nil {
		j.file.Close()
	}
}

// Blocks returns the number of decoder blocks of IN.
func (j *Job) Blocks() int { return j.blocks.Count }

// Size returns IN's size in bytes.
func (j *Job) Size() int64 { return j.file.Size }

// Calibration describes the calibration text the job decoded: the
// calibration pass, or for a given plan the alignment's chunks (nil: none).
func (j *Job) Calibration() *report.Calibration {
	if j.res == nil && len(j.align) > 0 { // a given plan: only the alignment's chunks
		c := &report.Calibration{Path: report.CalibPath(j.source), Samples: len(j.align), Ctx: len(j.align[0]), Seed: j.o.Calib.Seed}
		for _, ch := range j.align {
			c.Tokens += len(ch)
		}
		return c
	}
	return report.FromCalib(j.source, j.res)
}

// CtxTrain returns the loaded model's training context.
func (j *Job) CtxTrain() int { return j.model.NCtxTrain() }

// minStatsBytes is the least the alignment statistics may take (of the
// 256 MiB beyond the model that the memory budget allows), so that small
// models give every candidate statistics.
const minStatsBytes = 64 << 20

// blockF32Bytes returns the size of block 0's tensors in float32.
func blockF32Bytes(f *gguf.File) int64 {
	var n int64
	for _, t := range f.Tensors {
		if strings.HasPrefix(t.Name, "blk.0.") {
			n += int64(t.Elements()) * 4
		}
	}
	return n
}

// Prepare opens o.In, checks its structure and does what need asks for:
// the calibration pass and its analysis, with the model loaded with
// writable weights when the in-memory search and alignment edit it, the
// alignment chunks, the held-back chunks and the prefilled first
// alignment pass.
func Prepare(ctx context.Context, o Options, need Needs) (*Job, error) {
	f, blocks, err := Open(o.In)
	if err != nil {
		return nil, err
	}
	j := &Job{o: o, ctx: ctx, file: f, blocks: blocks, inLoss: math.NaN()}
	if _, err := o.removeCount(blocks); err != nil { // before any work
		j.Close()
		return nil, err
	}
	j.statsBytes = max(blockF32Bytes(f), minStatsBytes)
	if n, err := o.removeCount(blocks); err == nil && o.Fast && o.search() {
		// --fast takes every step's fit from one pass: a commit drops its
		// own fit and its two neighbours', so 3·steps − 2 candidates
		// never run out.
		steps := n / max(1, blocks.Period)
		if e, ok := f.Uint(f.Arch() + ".embedding_length"); ok {
			j.statsBytes = max(j.statsBytes, int64(3*steps-2)*merge.AlignStatsBytes(int(e)))
		}
	}
	if !need.Calib && !need.Edit {
		return j, nil
	}
	prepare := j.calibrate
	if !need.Calib {
		prepare = j.loadForEdit
	}
	if err := prepare(need); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// calibrate loads IN and runs the calibration pass of Prepare.
func (j *Job) calibrate(need Needs) error {
	o := &j.o
	samples, source, err := o.Calib.Load()
	if err != nil {
		return err
	}
	j.source = source
	var held []corpus.Sample
	if need.Held {
		samples, held = corpus.Split(samples, o.Holdout, o.Calib.Seed)
	}
	if err := j.planMemory(need); err != nil {
		return err
	}
	if j.model, err = cgo.LoadModel(o.In, o.Load); err != nil {
		return err
	}
	observe := func(t, n int) *calib.Observer {
		need.Phases.Next("calibrate", fmt.Sprintf("%d samples of %d tokens", n, t))
		j.showMemory()
		if !need.Prefill || !need.Edit {
			return nil
		}
		j.prefill = pipeline.NewPrefill(j.model, j.blocks, t, n, o.AlignSamples, runner.SeqsPerDecode(t, o.Calib.Batch), o.Threads, j.statsBytes, j.streamBytes, o.Candidates)
		return &calib.Observer{Capture: j.prefill.Capture, Before: j.prefill.Before}
	}
	var chunks [][]int32
	if j.res, chunks, err = o.Calib.Pass(j.ctx, j.model, corpus.Texts(samples), source, o.Threads, observe); err != nil {
		return err
	}
	j.probe = chunks[:min(probeChunks, len(chunks))]
	if j.an, err = analysis.Compute(j.res, o.Analysis); err != nil {
		return err
	}
	if need.Edit {
		j.chunks = chunks
		// The alignment passes decode the first AlignSamples calibration
		// chunks.
		j.align = chunks[:max(1, min(o.AlignSamples, len(chunks)))]
		if j.prefill != nil {
			j.align = j.prefill.AlignChunks(chunks)
		}
	}
	if !need.Held {
		return nil
	}
	t := j.res.Ctx
	n := 16
	var short *calib.TooShortError
	for ; n >= 2; n /= 2 {
		if j.held, err = calib.Tokens(j.model, corpus.Texts(held), n, t, o.Calib.Seed); !errors.As(err, &short) {
			break
		}
	}
	if err != nil {
		if errors.As(err, &short) {
			return fmt.Errorf("%s: held-back text for the λ search: %w (raise --holdout or give more text)", source, err)
		}
		return fmt.Errorf("%s: held-back text for the λ search: %w", source, err)
	}
	return nil
}

// loadForEdit loads IN (edits take private buffers, cgo.Weight.Set) and tokenizes the alignment's
// calibration chunks, for a given plan (Apply): no calibration pass.
func (j *Job) loadForEdit(need Needs) error {
	o := &j.o
	texts, source, err := o.Calib.Texts()
	if err != nil {
		return err
	}
	j.source = source
	if err := j.planMemory(need); err != nil {
		return err
	}
	if j.model, err = cgo.LoadModel(o.In, o.Load); err != nil {
		return err
	}
	n := max(1, min(o.AlignSamples, o.Calib.Samples))
	if j.align, err = calib.Tokens(j.model, texts, n, min(o.Calib.Ctx, j.model.NCtxTrain()), o.Calib.Seed); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	need.Phases.Next("load", fmt.Sprintf("IN and %d chunks of %s for the alignment", len(j.align), source))
	j.showMemory()
	j.probe = j.align[:min(probeChunks, len(j.align))]
	return nil
}

// planMemory works out the memory plan of the merge and refuses one that
// cannot fit (MemoryPlan.Check); showMemory prints it. The blocks whose
// tensors are edited: those removed and their survivors, or every block
// when the healing stage may refit each one's ffn_down.
func (j *Job) planMemory(need Needs) error {
	edits := 0
	heal := need.Edit && j.o.heals() && pipeline.HealBlocked(j.blocks) == ""
	if n, err := j.o.removeCount(j.blocks); need.Edit && err == nil {
		edits = n + 1
		if heal {
			edits = j.blocks.Count
		}
	}
	p := planMemory(&j.o, j.file, j.blocks, edits, heal)
	j.streamBytes = 0
	if j.o.search() && !j.o.Fast {
		j.streamBytes = streamBytes(&j.o, j.file)
	}
	if heal {
		j.streamBytes += healBytes(j.file)
	}
	p.Private += max(0, j.statsBytes-blockF32Bytes(j.file)) // --fast's statistics beyond one block
	warning, err := p.Check(j.o.In)
	j.memory = p.String() + "\n"
	if warning != "" {
		j.memory += "mka-gguf: warning: " + warning + "\n"
	}
	return err
}

// showMemory prints the memory plan, once.
func (j *Job) showMemory() {
	progress.Printf("%s", j.memory)
	j.memory = ""
}

// Version returns the version the job's files record.
func (j *Job) Version() string { return j.o.Version }
