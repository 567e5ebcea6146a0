package bench

// The merge part of bench: the cost of a whole default merge against one
// calibration pass and one streaming rewrite measured in the same run, and
// what the measured rates project to for a Llama-3-8B-shaped model.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/merge"
)

// MergeRemove is how many blocks the merge part removes.
const MergeRemove = 4

// Goals of the merge part (issue 11), each an upper bound on a ratio.
const (
	benchMergeWallGoal  = 2.5  // merge wall / (calibration pass + rewrite) (issue 28)
	benchMergeFastGoal  = 1.3  // the same for merge --fast
	benchMergeWriteGoal = 1.05 // bytes written / output bytes
	benchMergeRSSGoal   = 1    // peak RSS / (tensor bytes + 2 blocks in float32 + 256 MiB)
	benchMergeRSSSlack  = 256 << 20
	// Issue 28: a mapped model's merge holds in anonymous memory only the
	// edited tensors, the statistics and buffers: 2 blocks in float32 +
	// 512 MiB, whatever the model's size.
	benchMergeAnonGoal  = 1
	benchMergeAnonSlack = 512 << 20
)

// Merge is the merge part's measurement, in the --json report.
type Merge struct {
	Remove  int      `json:"remove"`
	Command []string `json:"command"` // the child's arguments
	// The baselines, measured in this process on the same file.
	LoadSeconds float64 `json:"load_seconds"` // llama.cpp load as merge loads (mapped unless --no-mmap)
	// CalibSeconds is the mean of the calibration pass timed before and
	// after the merge (CalibRuns): the pair brackets the merge, so that a
	// machine that slows down or speeds up meanwhile moves both sides of
	// the ratio.
	CalibSeconds   float64   `json:"calibration_seconds"`
	CalibRuns      []float64 `json:"calibration_runs_seconds"`
	CalibTokens    int       `json:"calibration_tokens"`
	RewriteSeconds float64   `json:"rewrite_seconds"`
	RewriteBytes   int64     `json:"rewrite_bytes"`
	// The child merge: wall time, peak RSS (its VmHWM, sampled; see
	// runPeak for why not ru_maxrss), bytes it wrote to storage
	// (ru_oublock × 512, the kernel's write_bytes of /proc/<pid>/io at
	// exit) and its output's size.
	WallSeconds float64 `json:"wall_seconds"`
	PeakRSS     int64   `json:"peak_rss_bytes"`
	// PeakAnon and PeakFile are the peaks of the child's RssAnon and
	// RssFile, sampled every 50 ms: a merge maps the model (its pages are
	// RssFile) unless --no-mmap, which reads it into RssAnon.
	PeakAnon     int64 `json:"peak_anon_bytes"`
	PeakFile     int64 `json:"peak_file_bytes"`
	AnonLimit    int64 `json:"anon_limit_bytes"` // 2 × BlockF32Bytes + 512 MiB
	WrittenBytes int64 `json:"written_bytes"`
	OutputBytes  int64 `json:"output_bytes"`
	ReportBytes  int64 `json:"report_bytes"` // the child's --report, part of WrittenBytes
	// RSSLimit = TensorBytes + 2 × BlockF32Bytes + 256 MiB.
	TensorBytes   int64 `json:"tensor_bytes"`
	BlockF32Bytes int64 `json:"block_f32_bytes"`
	RSSLimit      int64 `json:"rss_limit_bytes"`
	// What the child's --report says about its phases.
	ChildCalibSeconds  float64 `json:"child_calibration_seconds"`
	ChildSearchSeconds float64 `json:"child_search_seconds"`
	ChildSeconds       float64 `json:"child_seconds"`
	// ChildHealSeconds is the healing stage's part of the search (0: it
	// did not run), HealSolveSeconds its ridge solves', HealRefits the
	// blocks it refitted.
	ChildHealSeconds float64           `json:"child_heal_seconds"`
	HealSolveSeconds float64           `json:"heal_solve_seconds"`
	HealRefits       int               `json:"heal_refits"`
	Steps            []MergeStep       `json:"steps"`
	AlignChunks      int               `json:"align_chunks"`
	HeldChunks       int               `json:"held_chunks"`
	Ctx              int               `json:"ctx"`
	Projection       *Projection       `json:"projection"`
	Defaults         map[string]string `json:"merge_defaults"`
}

// MergeStep is one step of the child's search.
type MergeStep struct {
	Drop       int `json:"drop"`
	Candidates int `json:"candidates"`      // given an alignment fit
	Scored     int `json:"scored"`          // decoded on held-back text
	HeldChunks int `json:"heldback_chunks"` // held-back chunks decoded, all candidates (the race stops some early)
	// HeldDepth is the held-back decodes' block work in whole-model chunk
	// decodes (resumed decodes and the captures they start from run part
	// of the blocks), HeldLogits the chunks decoded with the output layer.
	HeldDepth  float64 `json:"heldback_depth"`
	HeldLogits int     `json:"heldback_logits"`
	Prefilled  bool    `json:"prefilled"`     // statistics from the calibration pass (no pass of its own)
	Deepest    int     `json:"deepest_block"` // loaded block the alignment pass stops after
	// PassDepth is the alignment pass's block work in whole-model chunk
	// decodes (a pass stops after its deepest candidate).
	PassDepth    float64 `json:"pass_depth"`
	AlignSeconds float64 `json:"align_seconds"`
	ScoreSeconds float64 `json:"score_seconds"`
}

// Projection is the projected cost of a default merge of a model of
// another shape on this machine.
type Projection struct {
	Shape  Shape   `json:"shape"`
	Params float64 `json:"params"`
	Bytes  float64 `json:"bytes"` // F16
	Remove int     `json:"remove"`
	// FLOPRate is the measured calibration rate in FLOP/s: tokens/s ×
	// 2 × the block matmul parameters of the measured model.
	FLOPRate float64           `json:"flop_per_s"`
	Phases   []Phase           `json:"phases"`
	Seconds  float64           `json:"seconds"`
	Baseline float64           `json:"baseline_seconds"` // calibration pass + rewrite
	Ratio    float64           `json:"ratio"`
	Method   string            `json:"method"`
	Scale    map[string]string `json:"scaling"`
}

// Phase is one phase of a projected merge.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note"`
}

// mergeDefault returns the default of merge's numeric option name
// (shrink.Defaults), which the merge part runs with.
func mergeDefault(name string) float64 {
	d := shrink.Defaults()
	switch name {
	case "samples":
		return float64(d.Calib.Samples)
	case "ctx":
		return float64(d.Calib.Ctx)
	case "seed":
		return float64(d.Calib.Seed)
	case "batch":
		return float64(d.Calib.Batch)
	case "holdout":
		return d.Holdout
	case "candidates":
		return float64(d.Candidates)
	case "align-samples":
		return float64(d.AlignSamples)
	}
	panic("bench: merge has no numeric option --" + name)
}

// mergePart measures, on the model at path: (a) the calibration pass
// exactly as merge runs it (merge's --samples, --ctx, --seed, --holdout and
// --batch defaults, the built-in set), (b) a streaming rewrite removing
// MergeRemove blocks (edit.Rewrite of a reverse-pruning plan), (c)
// "mka-gguf merge IN OUT --remove N" with default settings in a child
// process and (a) once more; then the ratios and the projection.
func mergePart(ctx context.Context, o *Options, rep *Report, path, dir string) error {
	threads := o.Threads
	f, blocks, err := shrink.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if blocks.Count <= MergeRemove {
		return fmt.Errorf("merge: %s has %d blocks; removing %d needs at least %d", path, blocks.Count, MergeRemove, MergeRemove+1)
	}
	bm := &Merge{Remove: MergeRemove, Defaults: map[string]string{}}
	blockMat, outMat, blockElems, tensorBytes := modelFLOPs(f)
	bm.TensorBytes, bm.BlockF32Bytes = tensorBytes, 4*blockElems
	bm.RSSLimit = tensorBytes + 2*bm.BlockF32Bytes + benchMergeRSSSlack
	bm.AnonLimit = 2*bm.BlockF32Bytes + benchMergeAnonSlack
	for _, k := range []string{"samples", "ctx", "seed", "holdout", "batch", "candidates", "align-samples"} {
		bm.Defaults[k] = strconv.FormatFloat(mergeDefault(k), 'g', -1, 64)
	}

	// (a) The calibration pass, on the model loaded as merge loads it.
	if err := mergeCalib(ctx, bm, o.Load, path, threads); err != nil {
		return err
	}
	// (b) One streaming rewrite removing the blocks.
	plan, err := merge.PlanPruneReverse(blocks.Count, MergeRemove)
	if err != nil {
		return err
	}
	rw := filepath.Join(dir, "bench-merge-rewrite.gguf")
	os.Remove(rw)
	t0 := time.Now()
	if err := shrink.Rewrite(ctx, f, blocks, plan, rw, shrink.RewriteOptions{}); err != nil {
		return fmt.Errorf("merge: rewrite: %w", err)
	}
	bm.RewriteSeconds = time.Since(t0).Seconds()
	st, err := os.Stat(rw)
	if err != nil {
		return err
	}
	bm.RewriteBytes = st.Size()
	os.Remove(rw)
	progress.Printf("bench: merge: rewrite without %d blocks: %.1f s, %.0f MB/s\n", MergeRemove, bm.RewriteSeconds, float64(bm.RewriteBytes)/1e6/bm.RewriteSeconds)

	// (c) The merge itself, in a child process of its own.
	if err := mergeChild(ctx, o, bm, path, dir); err != nil {
		return err
	}
	// (a) again, after the merge.
	if err := mergeCalib(ctx, bm, o.Load, path, threads); err != nil {
		return err
	}
	bm.CalibSeconds = stat.Mean(bm.CalibRuns, nil)
	base := bm.CalibSeconds + bm.RewriteSeconds
	settings, goal := "default settings", benchMergeWallGoal
	if len(o.MergeFlags) > 0 {
		settings = strings.Join(o.MergeFlags, " ")
	}
	if slices.Contains(o.MergeFlags, "--fast") {
		goal = benchMergeFastGoal
	}
	rep.add(Result{Name: "merge.calibrate", Value: bm.CalibSeconds, Unit: "s",
		Note: fmt.Sprintf("calibration pass as merge runs it: %d × %d tokens, %.0f tok/s; mean of %.1f s before and %.1f s after the merge",
			int(mergeDefault("samples")), bm.Ctx, float64(bm.CalibTokens)/bm.CalibSeconds, bm.CalibRuns[0], bm.CalibRuns[len(bm.CalibRuns)-1])})
	rep.add(Result{Name: "merge.rewrite", Value: bm.RewriteSeconds, Unit: "s",
		Note: fmt.Sprintf("edit.Rewrite without %d blocks, %.0f MB written/s", MergeRemove, float64(bm.RewriteBytes)/1e6/bm.RewriteSeconds)})
	rep.add(Result{Name: "merge.wall", Value: bm.WallSeconds, Unit: "s", BaselineName: "calibrate+rewrite", BaselineValue: base,
		Goal: goal, AtMost: true, Note: fmt.Sprintf("mka-gguf merge --remove %d, %s, child process", MergeRemove, settings)})
	rep.add(Result{Name: "merge.written", Value: float64(bm.WrittenBytes) / 1e6, Unit: "MB", BaselineName: "output", BaselineValue: float64(bm.OutputBytes) / 1e6,
		Goal: benchMergeWriteGoal, AtMost: true, Note: "child's ru_oublock × 512 (write_bytes of /proc/<pid>/io at exit)"})
	rep.add(Result{Name: "merge.peak_rss", Value: float64(bm.PeakRSS) / (1 << 20), Unit: "MiB", BaselineName: "tensors+2 blocks f32+256 MiB", BaselineValue: float64(bm.RSSLimit) / (1 << 20),
		Goal: benchMergeRSSGoal, AtMost: true, Note: "child's VmHWM, sampled (a mapped model's resident pages count)"})
	rep.add(Result{Name: "merge.peak_anon", Value: float64(bm.PeakAnon) / (1 << 20), Unit: "MiB", BaselineName: "2 blocks f32+512 MiB", BaselineValue: float64(bm.AnonLimit) / (1 << 20),
		Goal: benchMergeAnonGoal, AtMost: true, Note: fmt.Sprintf("child's peak RssAnon (sampled; the model %s); bench --no-mmap measures the other mode", loadMode(o.Global))})
	p := project(bm, llama3x8B, 8, blockMat, outMat, f.Size, blocks.Count, rep.Model)
	bm.Projection = p
	rep.add(Result{Name: "merge.projected." + p.Shape.Name, Value: p.Seconds, Unit: "s", BaselineName: "calibrate+rewrite", BaselineValue: p.Baseline,
		Goal: goal, AtMost: true, Note: fmt.Sprintf("merge --remove %d of a %s-shaped F16 model on this machine, %s (projection)", p.Remove, p.Shape.Name, settings)})
	rep.Merge = bm
	return nil
}

// mergeCalib loads the model as merge does (mp: mapped unless --no-mmap),
// tokenizes the built-in set after merge's held-back
// split, and times tokenization and calib.Run with merge's defaults,
// appending the time to bm.CalibRuns. It also counts the alignment and
// held-back chunks merge would use.
func mergeCalib(ctx context.Context, bm *Merge, mp cgo.ModelParams, path string, threads int) error {
	t0 := time.Now()
	m, err := cgo.LoadModel(path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	bm.LoadSeconds = time.Since(t0).Seconds()
	n, seed := int(mergeDefault("samples")), uint64(mergeDefault("seed"))
	t := min(int(mergeDefault("ctx")), m.NCtxTrain())
	samples, held := corpus.Split(corpus.Default(), mergeDefault("holdout"), seed)
	bar := progress.New("bench: merge: calibrate", n, "samples")
	t1 := time.Now()
	chunks, err := calib.Tokens(m, corpus.Texts(samples), n, t, seed)
	if err != nil {
		bar.Done()
		return fmt.Errorf("%s: %w", corpus.DefaultName, err)
	}
	res, err := calib.Run(m, chunks, calib.Options{Context: ctx, Samples: n, Ctx: t, Seed: seed, Threads: threads,
		BatchTokens: int(mergeDefault("batch")),
		Progress:    func(done, _ int, tps float64) { bar.Set(done, fmt.Sprintf("%.0f tok/s", tps)) }})
	bar.Done()
	if err != nil {
		return err
	}
	sec := time.Since(t1).Seconds()
	bm.CalibRuns, bm.CalibTokens, bm.Ctx = append(bm.CalibRuns, sec), res.Tokens, t
	bm.AlignChunks = max(1, min(int(mergeDefault("align-samples")), res.Samples))
	// merge's held-back chunks: 16, or fewer when the held text is short.
	for k := 16; k >= 2; k /= 2 {
		if _, err := calib.Tokens(m, corpus.Texts(held), k, t, seed); err == nil {
			bm.HeldChunks = k
			break
		}
	}
	progress.Printf("bench: merge: calibration pass %.1f s (%d tokens, %.0f tok/s)\n", sec, bm.CalibTokens, float64(bm.CalibTokens)/sec)
	return nil
}

// loadMode says how the child loads the model, from its global flags.
func loadMode(global []string) string {
	if slices.Contains(global, "--no-mmap=true") || slices.Contains(global, "--no-mmap") {
		return "read into memory, --no-mmap"
	}
	return "memory-mapped"
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-4<<10:]
	}
	return len(p), nil
}

// mergeChild runs this binary's merge with default settings on path
// and records its wall time, peak RSS, bytes written and --report.
func mergeChild(ctx context.Context, o *Options, bm *Merge, path, dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	out := filepath.Join(dir, "bench-merge-out.gguf")
	report := filepath.Join(dir, "bench-merge-report.json")
	os.Remove(out)
	os.Remove(report)
	defer os.Remove(out)
	args := append(slices.Clone(o.Global),
		"merge", path, out, "--remove", strconv.Itoa(MergeRemove), "--threads", strconv.Itoa(o.Threads), "--report", report)
	args = append(args, o.MergeFlags...)
	bm.Command = args
	cmd := exec.CommandContext(ctx, exe, args...)
	var tail tailBuffer
	var stderr io.Writer = &tail
	if !progress.Quiet {
		stderr = io.MultiWriter(&tail, progress.Output)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	progress.Printf("bench: merge: %s %s\n", filepath.Base(exe), strings.Join(args, " "))
	t0 := time.Now()
	if err = cmd.Start(); err == nil {
		stop := make(chan struct{})
		peak := watchRSS(cmd.Process.Pid, 50*time.Millisecond, stop)
		err = cmd.Wait()
		close(stop)
		p := <-peak
		bm.PeakRSS, bm.PeakAnon, bm.PeakFile = p.hwm, p.anon, p.file
	}
	bm.WallSeconds = time.Since(t0).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(string(tail.b))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("merge: %s %s: %v: %s", exe, strings.Join(args, " "), err, msg)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return errors.New("merge: no resource usage of the child process")
	}
	// Linux: ru_oublock counts 512-byte blocks, the task's write_bytes
	// (bytes sent to the storage layer, including those still in the page
	// cache when it exited).
	bm.WrittenBytes = int64(ru.Oublock) * 512
	st, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	bm.OutputBytes = st.Size()
	data, err := os.ReadFile(report)
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	bm.ReportBytes = int64(len(data))
	os.Remove(report)
	var mr shrink.Report
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&mr); err != nil {
		return fmt.Errorf("merge: %s: %w", report, err)
	}
	if mr.Calibration == nil || len(mr.Search) != MergeRemove {
		return fmt.Errorf("merge: %s: want a calibration and %d search steps, got %d steps", report, MergeRemove, len(mr.Search))
	}
	bm.ChildCalibSeconds, bm.ChildSearchSeconds, bm.ChildSeconds = mr.Calibration.Seconds, mr.SearchSeconds, mr.Seconds
	if h := mr.Heal; h != nil && h.Skipped == "" {
		bm.ChildHealSeconds, bm.HealSolveSeconds, bm.HealRefits = h.Seconds, h.SolveSeconds, len(h.Refits)
	}
	phys := make([]int, mr.Original)
	for i := range phys {
		phys[i] = i
	}
	for _, s := range mr.Search {
		// A --fast step that reused earlier fits made no pass either.
		ms := MergeStep{Drop: s.Drop, Candidates: len(s.Candidates), AlignSeconds: s.AlignSeconds, ScoreSeconds: s.ScoreSeconds, Prefilled: s.Prefilled || s.Reused}
		for _, cd := range s.Candidates {
			if cd.Held != nil {
				ms.Scored++
				ms.HeldChunks += bm.HeldChunks
			}
			if cd.RaceChunks > 0 {
				ms.Scored++
				ms.HeldChunks += cd.RaceChunks
			}
			if cd.Drop < len(phys) {
				ms.Deepest = max(ms.Deepest, phys[cd.Drop])
			}
		}
		ms.HeldDepth, ms.HeldLogits = float64(s.HeldBlocks)/float64(mr.Original), s.HeldLogits
		if s.HeldLogits == 0 { // a report without them: whole decodes
			ms.HeldDepth, ms.HeldLogits = float64(ms.HeldChunks), ms.HeldChunks
		}
		if !ms.Prefilled {
			ms.PassDepth = float64(s.PassBlocks) / float64(mr.Original)
			if s.PassBlocks == 0 { // a report without them: every block
				ms.PassDepth = float64(bm.AlignChunks*(ms.Deepest+1)) / float64(mr.Original)
			}
		}
		if s.Drop < len(phys) {
			phys = append(phys[:s.Drop], phys[s.Drop+1:]...)
		}
		bm.Steps = append(bm.Steps, ms)
	}
	progress.Printf("bench: merge: %.1f s, peak RSS %s (anonymous %s, file %s), %s written, output %s\n", bm.WallSeconds,
		files.Human(uint64(bm.PeakRSS)), files.Human(uint64(bm.PeakAnon)), files.Human(uint64(bm.PeakFile)), files.Human(uint64(bm.WrittenBytes)), files.Human(uint64(bm.OutputBytes)))
	return nil
}
