package main

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

	"github.com/urfave/cli/v2"
	"gonum.org/v1/gonum/stat"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// benchMergeRemove is how many blocks the merge part removes.
const benchMergeRemove = 4

// Goals of the merge part (issue 11), each an upper bound on a ratio.
const (
	benchMergeWallGoal  = 4    // merge wall / (calibration pass + rewrite)
	benchMergeWriteGoal = 1.05 // bytes written / output bytes
	benchMergeRSSGoal   = 1    // peak RSS / (tensor bytes + 2 blocks in float32 + 256 MiB)
	benchMergeRSSSlack  = 256 << 20
)

// benchMerge is the merge part's measurement, in the --json report.
type benchMerge struct {
	Remove  int      `json:"remove"`
	Command []string `json:"command"` // the child's arguments
	// The baselines, measured in this process on the same file.
	LoadSeconds float64 `json:"load_seconds"` // llama.cpp load with writable weights, as merge loads
	// CalibSeconds is the mean of the calibration pass timed before and
	// after the merge (CalibRuns): the pair brackets the merge, so that a
	// machine that slows down or speeds up meanwhile moves both sides of
	// the ratio.
	CalibSeconds   float64   `json:"calibration_seconds"`
	CalibRuns      []float64 `json:"calibration_runs_seconds"`
	CalibTokens    int       `json:"calibration_tokens"`
	RewriteSeconds float64   `json:"rewrite_seconds"`
	RewriteBytes   int64     `json:"rewrite_bytes"`
	// The child merge: wall time, peak RSS (getrusage ru_maxrss), bytes it
	// wrote to storage (ru_oublock × 512, the kernel's write_bytes of
	// /proc/<pid>/io at exit) and its output's size.
	WallSeconds  float64 `json:"wall_seconds"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	WrittenBytes int64   `json:"written_bytes"`
	OutputBytes  int64   `json:"output_bytes"`
	ReportBytes  int64   `json:"report_bytes"` // the child's --report, part of WrittenBytes
	// RSSLimit = TensorBytes + 2 × BlockF32Bytes + 256 MiB.
	TensorBytes   int64 `json:"tensor_bytes"`
	BlockF32Bytes int64 `json:"block_f32_bytes"`
	RSSLimit      int64 `json:"rss_limit_bytes"`
	// What the child's --report says about its phases.
	ChildCalibSeconds  float64           `json:"child_calibration_seconds"`
	ChildSearchSeconds float64           `json:"child_search_seconds"`
	ChildSeconds       float64           `json:"child_seconds"`
	Steps              []benchMergeStep  `json:"steps"`
	AlignChunks        int               `json:"align_chunks"`
	HeldChunks         int               `json:"held_chunks"`
	Ctx                int               `json:"ctx"`
	Projection         *benchProjection  `json:"projection"`
	Defaults           map[string]string `json:"merge_defaults"`
}

// benchMergeStep is one step of the child's search.
type benchMergeStep struct {
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

// benchProjection is the projected cost of a default merge of a model of
// another shape on this machine.
type benchProjection struct {
	Shape  llamaShape `json:"shape"`
	Params float64    `json:"params"`
	Bytes  float64    `json:"bytes"` // F16
	Remove int        `json:"remove"`
	// FLOPRate is the measured calibration rate in FLOP/s: tokens/s ×
	// 2 × the block matmul parameters of the measured model.
	FLOPRate float64           `json:"flop_per_s"`
	Phases   []benchPhase      `json:"phases"`
	Seconds  float64           `json:"seconds"`
	Baseline float64           `json:"baseline_seconds"` // calibration pass + rewrite
	Ratio    float64           `json:"ratio"`
	Method   string            `json:"method"`
	Scale    map[string]string `json:"scaling"`
}

// benchPhase is one phase of a projected merge.
type benchPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Note    string  `json:"note"`
}

// llamaShape is a llama decoder's shape, for parameter and FLOP counts.
type llamaShape struct {
	Name    string `json:"name"`
	Blocks  int    `json:"blocks"`
	Embd    int    `json:"embd"`
	FFN     int    `json:"ffn"`
	Heads   int    `json:"heads"`
	KVHeads int    `json:"kv_heads"`
	Vocab   int    `json:"vocab"`
}

// llama3x8B is the shape the projection is made for.
var llama3x8B = llamaShape{Name: "Llama-3-8B", Blocks: 32, Embd: 4096, FFN: 14336, Heads: 32, KVHeads: 8, Vocab: 128256}

// blockMatmul returns the matmul weights of one block:
//
//	q, o: e²;  k, v: e·e_kv (e_kv = e/heads·kv_heads);  gate, up, down: e·ffn
func (s llamaShape) blockMatmul() float64 {
	e := float64(s.Embd)
	kv := e / float64(s.Heads) * float64(s.KVHeads)
	return 2*e*e + 2*e*kv + 3*e*float64(s.FFN)
}

// params returns every weight: the blocks (matmuls and two norms), the
// token embeddings, the output layer and the output norm.
func (s llamaShape) params() float64 {
	e := float64(s.Embd)
	return float64(s.Blocks)*(s.blockMatmul()+2*e) + 2*float64(s.Vocab)*e + e
}

// benchModelFLOPs reads, from a GGUF file, the matmul weights of block 0
// (every 2-D blk.0 tensor) and of the output layer (output.weight, or the
// token embeddings when they are tied), the element count of block 0 and
// the bytes of every tensor.
func benchModelFLOPs(f *gguf.File) (block, output float64, blockElems, tensorBytes int64) {
	out := "output.weight"
	if _, ok := f.Tensor(out); !ok {
		out = "token_embd.weight"
	}
	for _, t := range f.Tensors {
		tensorBytes += int64(t.Size())
		switch {
		case strings.HasPrefix(t.Name, "blk.0."):
			blockElems += int64(t.Elements())
			if len(t.Dims) == 2 {
				block += float64(t.Elements())
			}
		case t.Name == out:
			output = float64(t.Elements())
		}
	}
	return block, output, blockElems, tensorBytes
}

// mergeDefault returns the default of merge's numeric flag name.
func mergeDefault(name string) float64 {
	for _, f := range mergeFlags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f := f.(type) {
		case *cli.IntFlag:
			return float64(f.Value)
		case *cli.Float64Flag:
			return f.Value
		case *cli.Uint64Flag:
			return float64(f.Value)
		}
	}
	panic("bench: merge has no numeric flag --" + name)
}

// benchMergeRun measures, on the model at path: (a) the calibration pass
// exactly as merge runs it (merge's --samples, --ctx, --seed, --holdout and
// --batch defaults, the built-in set), (b) a streaming rewrite removing
// benchMergeRemove blocks (edit.Rewrite of a reverse-pruning plan), (c)
// "mka-gguf merge IN OUT --remove N" with default settings in a child
// process and (a) once more; then the ratios and the projection.
func benchMergeRun(c *cli.Context, rep *benchReport, path, dir string, threads int) error {
	ctx := c.Context
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	blocks, err := arch.Inspect(f)
	if err != nil {
		return err
	}
	if blocks.Count <= benchMergeRemove {
		return fmt.Errorf("merge: %s has %d blocks; removing %d needs at least %d", path, blocks.Count, benchMergeRemove, benchMergeRemove+1)
	}
	bm := &benchMerge{Remove: benchMergeRemove, Defaults: map[string]string{}}
	blockMat, outMat, blockElems, tensorBytes := benchModelFLOPs(f)
	bm.TensorBytes, bm.BlockF32Bytes = tensorBytes, 4*blockElems
	bm.RSSLimit = tensorBytes + 2*bm.BlockF32Bytes + benchMergeRSSSlack
	for _, k := range []string{"samples", "ctx", "seed", "holdout", "batch", "candidates", "align-samples"} {
		bm.Defaults[k] = strconv.FormatFloat(mergeDefault(k), 'g', -1, 64)
	}

	// (a) The calibration pass, on the model loaded as merge loads it.
	if err := benchMergeCalib(ctx, bm, path, threads); err != nil {
		return err
	}
	// (b) One streaming rewrite removing the blocks.
	plan, err := merge.PlanPruneReverse(blocks.Count, benchMergeRemove)
	if err != nil {
		return err
	}
	rw := filepath.Join(dir, "bench-merge-rewrite.gguf")
	os.Remove(rw)
	t0 := time.Now()
	if err := edit.Rewrite(ctx, f, blocks, plan, rw, codecFor(), edit.RewriteOptions{}); err != nil {
		return fmt.Errorf("merge: rewrite: %w", err)
	}
	bm.RewriteSeconds = time.Since(t0).Seconds()
	st, err := os.Stat(rw)
	if err != nil {
		return err
	}
	bm.RewriteBytes = st.Size()
	os.Remove(rw)
	progress.Printf("bench: merge: rewrite without %d blocks: %.1f s, %.0f MB/s\n", benchMergeRemove, bm.RewriteSeconds, float64(bm.RewriteBytes)/1e6/bm.RewriteSeconds)

	// (c) The merge itself, in a child process of its own.
	if err := benchMergeChild(c, bm, path, dir, threads); err != nil {
		return err
	}
	// (a) again, after the merge.
	if err := benchMergeCalib(ctx, bm, path, threads); err != nil {
		return err
	}
	bm.CalibSeconds = stat.Mean(bm.CalibRuns, nil)
	base := bm.CalibSeconds + bm.RewriteSeconds
	rep.add(benchResult{Name: "merge.calibrate", Value: bm.CalibSeconds, Unit: "s",
		Note: fmt.Sprintf("calibration pass as merge runs it: %d × %d tokens, %.0f tok/s; mean of %.1f s before and %.1f s after the merge",
			int(mergeDefault("samples")), bm.Ctx, float64(bm.CalibTokens)/bm.CalibSeconds, bm.CalibRuns[0], bm.CalibRuns[len(bm.CalibRuns)-1])})
	rep.add(benchResult{Name: "merge.rewrite", Value: bm.RewriteSeconds, Unit: "s",
		Note: fmt.Sprintf("edit.Rewrite without %d blocks, %.0f MB written/s", benchMergeRemove, float64(bm.RewriteBytes)/1e6/bm.RewriteSeconds)})
	rep.add(benchResult{Name: "merge.wall", Value: bm.WallSeconds, Unit: "s", BaselineName: "calibrate+rewrite", BaselineValue: base,
		Goal: benchMergeWallGoal, AtMost: true, Note: fmt.Sprintf("mka-gguf merge --remove %d, default settings, child process", benchMergeRemove)})
	rep.add(benchResult{Name: "merge.written", Value: float64(bm.WrittenBytes) / 1e6, Unit: "MB", BaselineName: "output", BaselineValue: float64(bm.OutputBytes) / 1e6,
		Goal: benchMergeWriteGoal, AtMost: true, Note: "child's ru_oublock × 512 (write_bytes of /proc/<pid>/io at exit)"})
	rep.add(benchResult{Name: "merge.peak_rss", Value: float64(bm.PeakRSS) / (1 << 20), Unit: "MiB", BaselineName: "tensors+2 blocks f32+256 MiB", BaselineValue: float64(bm.RSSLimit) / (1 << 20),
		Goal: benchMergeRSSGoal, AtMost: true, Note: "child's ru_maxrss (VmHWM)"})
	p := benchProject(bm, llama3x8B, 8, blockMat, outMat, f.Size, blocks.Count, rep.Model)
	bm.Projection = p
	rep.add(benchResult{Name: "merge.projected." + p.Shape.Name, Value: p.Seconds, Unit: "s", BaselineName: "calibrate+rewrite", BaselineValue: p.Baseline,
		Goal: benchMergeWallGoal, AtMost: true, Note: fmt.Sprintf("merge --remove %d of a %s-shaped F16 model on this machine (projection)", p.Remove, p.Shape.Name)})
	rep.Merge = bm
	return nil
}

// benchMergeCalib loads the model with writable weights (as merge does for
// its in-memory search), tokenizes the built-in set after merge's held-back
// split, and times tokenization and calib.Run with merge's defaults,
// appending the time to bm.CalibRuns. It also counts the alignment and
// held-back chunks merge would use.
func benchMergeCalib(ctx context.Context, bm *benchMerge, path string, threads int) error {
	mp := modelParams()
	mp.NoMmap = true
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
	chunks, err := calib.Tokens(m, texts(samples), n, t, seed)
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
		if _, err := calib.Tokens(m, texts(held), k, t, seed); err == nil {
			bm.HeldChunks = k
			break
		}
	}
	progress.Printf("bench: merge: calibration pass %.1f s (%d tokens, %.0f tok/s)\n", sec, bm.CalibTokens, float64(bm.CalibTokens)/sec)
	return nil
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

// benchMergeChild runs this binary's merge with default settings on path
// and records its wall time, peak RSS, bytes written and --report.
func benchMergeChild(c *cli.Context, bm *benchMerge, path, dir string, threads int) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	out := filepath.Join(dir, "bench-merge-out.gguf")
	report := filepath.Join(dir, "bench-merge-report.json")
	os.Remove(out)
	os.Remove(report)
	defer os.Remove(out)
	args := []string{"--cpu-variant", c.String("cpu-variant"), "--gpu-layers", strconv.Itoa(gpuLayers),
		"merge", path, out, "--remove", strconv.Itoa(benchMergeRemove), "--threads", strconv.Itoa(threads), "--report", report}
	bm.Command = args
	cmd := exec.CommandContext(c.Context, exe, args...)
	var tail tailBuffer
	var stderr io.Writer = &tail
	if !progress.Quiet {
		stderr = io.MultiWriter(&tail, progress.Output)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	progress.Printf("bench: merge: %s %s\n", filepath.Base(exe), strings.Join(args, " "))
	t0 := time.Now()
	err = cmd.Run()
	bm.WallSeconds = time.Since(t0).Seconds()
	if err != nil {
		if c.Context.Err() != nil {
			return c.Context.Err()
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
	// Linux: ru_maxrss in KiB; ru_oublock counts 512-byte blocks, the
	// task's write_bytes (bytes sent to the storage layer, including those
	// still in the page cache when it exited).
	bm.PeakRSS, bm.WrittenBytes = int64(ru.Maxrss)<<10, int64(ru.Oublock)*512
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
	var mr mergeReport
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&mr); err != nil {
		return fmt.Errorf("merge: %s: %w", report, err)
	}
	if mr.Calibration == nil || len(mr.Search) != benchMergeRemove {
		return fmt.Errorf("merge: %s: want a calibration and %d search steps, got %d steps", report, benchMergeRemove, len(mr.Search))
	}
	bm.ChildCalibSeconds, bm.ChildSearchSeconds, bm.ChildSeconds = mr.Calibration.Seconds, mr.SearchSeconds, mr.Seconds
	phys := make([]int, mr.Original)
	for i := range phys {
		phys[i] = i
	}
	for _, s := range mr.Search {
		ms := benchMergeStep{Drop: s.Drop, Candidates: len(s.Candidates), AlignSeconds: s.AlignSeconds, ScoreSeconds: s.ScoreSeconds, Prefilled: s.Prefilled}
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
	progress.Printf("bench: merge: %.1f s, peak RSS %s, %s written, output %s\n", bm.WallSeconds,
		human(uint64(bm.PeakRSS)), human(uint64(bm.WrittenBytes)), human(uint64(bm.OutputBytes)))
	return nil
}

// benchProject projects a default merge removing remove blocks of a model
// of shape s on this machine. Decodes take tokens × FLOPs/token at the
// measured calibration FLOP rate, FLOPs/token being 2 × the matmul weights
// the decode runs (attention scores, under 1 % at 256 tokens, are left
// out): the calibration pass and the alignment passes run every loaded
// block (a removed block stays in the graph as an identity; a pass stops
// after the deepest candidate, taken as the last block) without the output
// layer; held-back scoring runs every block and the output layer. The Go
// work of the search (alignment statistics XᵀX, XᵀY and the Cholesky solve;
// folding alignments into ffn_down) is what the child's steps took beyond
// their decodes, scaled by its FLOPs; load, SHA-256 and verification
// scale with the file size, the rewrite runs at the measured MB/s.
func benchProject(bm *benchMerge, s llamaShape, remove int, blockMat, outMat float64, fileBytes int64, blocks int, model *benchModel) *benchProjection {
	L := float64(blocks)
	T := float64(bm.Ctx)
	rate := float64(bm.CalibTokens) / bm.CalibSeconds * 2 * L * blockMat
	p := &benchProjection{Shape: s, Params: s.params(), Bytes: 2 * s.params(), Remove: remove, FLOPRate: rate, Scale: map[string]string{}}
	sL, sBlock, sOut := float64(s.Blocks), s.blockMatmul(), float64(s.Vocab)*float64(s.Embd)
	nCal, nAlign := mergeDefault("samples"), float64(bm.AlignChunks)
	k := int(mergeDefault("candidates"))

	// The measured child: its decodes predicted at the same rate, the rest
	// of each step is Go work.
	embd, ffn := 0.0, 0.0
	if model != nil {
		embd, ffn = float64(model.Embd), float64(model.FFN)
	}
	rows := nAlign * (T - 1) // tokens per alignment pass after BOS
	goFit := func(d float64) float64 { return 3*d*d*rows + 7.0/3*d*d*d }
	// The step whose statistics came from the calibration pass made them
	// there: the child's calibration beyond the plain pass is fit work.
	alignGo := max(0, bm.ChildCalibSeconds-bm.CalibSeconds)
	var scoreGo, fitWork, editWork, heldDepth, heldLogits, passDepth float64
	passes := 0
	for _, st := range bm.Steps {
		if !st.Prefilled {
			passes++
			dec := T * 2 * st.PassDepth * L * blockMat / rate
			alignGo += max(0, st.AlignSeconds-dec)
			passDepth += st.PassDepth / nAlign
		}
		dec := T * 2 * (st.HeldDepth*L*blockMat + float64(st.HeldLogits)*outMat) / rate
		scoreGo += max(0, st.ScoreSeconds-dec)
		heldDepth += st.HeldDepth
		heldLogits += float64(st.HeldLogits)
		fitWork += float64(st.Candidates) * goFit(embd)
		editWork += float64(st.Scored+1) * 2 * embd * embd * ffn
	}
	nSteps := float64(max(len(bm.Steps), 1))
	depthPerStep, logitsPerStep := heldDepth/nSteps, heldLogits/nSteps
	prefilled := len(bm.Steps) - passes // steps whose statistics came from the calibration pass
	var fitWork8, editWork8 float64
	// As merge bounds the statistics: one block in float32.
	block8 := 4 * (s.blockMatmul() + 2*float64(s.Embd))
	limit := max(int(block8/float64(merge.AlignStatsBytes(s.Embd))), k, 1)
	for step := range remove {
		cands := min(s.Blocks-step-1, limit)
		fitWork8 += float64(cands) * goFit(float64(s.Embd))
		editWork8 += float64(min(k, cands)+1) * 2 * float64(s.Embd) * float64(s.Embd) * float64(s.FFN)
	}
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	outBytes := 2 * (p.Params - float64(remove)*(sBlock+2*float64(s.Embd)))
	mbps := float64(bm.RewriteBytes) / bm.RewriteSeconds
	other := max(0, bm.WallSeconds-bm.ChildCalibSeconds-bm.ChildSearchSeconds-bm.RewriteSeconds)
	add := func(name string, sec float64, note string) {
		p.Phases = append(p.Phases, benchPhase{Name: name, Seconds: sec, Note: note})
		p.Seconds += sec
	}
	calibSec := nCal * T * 2 * sL * sBlock / rate
	add("calibrate", calibSec, fmt.Sprintf("%.0f × %.0f tokens, %d blocks, no output layer", nCal, T, s.Blocks))
	nPass := float64(max(remove-prefilled, 0))
	// The passes' depth as measured: the fraction of the blocks a pass
	// runs (it stops after the deepest candidate), per pass.
	frac := 1.0
	if passes > 0 {
		frac = passDepth / float64(passes)
	}
	add("alignment passes", nPass*nAlign*T*2*frac*sL*sBlock/rate,
		fmt.Sprintf("%.0f × %.0f × %.0f tokens, %.0f %% of the blocks as measured (step 1's is the calibration pass; a pass stops after the deepest candidate)", nPass, nAlign, T, 100*frac))
	add("alignment fits", alignGo*ratio(fitWork8, fitWork),
		fmt.Sprintf("XᵀX, XᵀY (ggml), Cholesky: %d candidates per step (one block of float32), measured %.1f s scaled by FLOPs", limit, alignGo))
	add("held-back scoring", float64(remove)*T*2*(depthPerStep*sL*sBlock+logitsPerStep*sOut)/rate,
		fmt.Sprintf("%d steps × %.1f chunks with logits (%d candidates, the race stops losers, as measured) × %.0f tokens, their blocks %.1f whole-model decodes (resumed at each candidate's first changed block, as a fraction of depth as measured)", remove, logitsPerStep, k, T, depthPerStep))
	add("weight edits, losses (Go)", scoreGo*ratio(editWork8, editWork),
		fmt.Sprintf("alignments folded into ffn_down, next-token losses: measured %.1f s scaled by FLOPs", scoreGo))
	rwSec := outBytes / mbps
	add("rewrite", rwSec, fmt.Sprintf("%s at the measured %.0f MB/s", human(uint64(outBytes)), mbps/1e6))
	add("load, SHA-256, verify", other*ratio(p.Bytes, float64(fileBytes)),
		fmt.Sprintf("measured %.1f s scaled by file size", other))
	p.Baseline = calibSec + rwSec
	p.Ratio = ratio(p.Seconds, p.Baseline)
	p.Method = "decodes: tokens × 2 × matmul weights / measured calibration FLOP/s; Go work: the child's remainder scaled by its FLOPs; I/O by bytes"
	p.Scale["flop_per_token_calibration"] = fmt.Sprintf("%.4g (measured model %.4g)", 2*sL*sBlock, 2*L*blockMat)
	p.Scale["flop_per_token_scoring"] = fmt.Sprintf("%.4g (measured model %.4g)", 2*(sL*sBlock+sOut), 2*(L*blockMat+outMat))
	p.Scale["fit_work"] = fmt.Sprintf("%.4g (measured model %.4g)", fitWork8, fitWork)
	p.Scale["edit_work"] = fmt.Sprintf("%.4g (measured model %.4g)", editWork8, editWork)
	return p
}

// benchMergeTable prints the merge part's details and its projection.
func benchMergeTable(w io.Writer, bm *benchMerge) {
	fmt.Fprintf(w, "\nmerge --remove %d: wall %.1f s (child: calibration %.1f s, search %.1f s, rest %.1f s); load %.1f s; %d alignment chunks, %d held-back chunks of %d tokens\n",
		bm.Remove, bm.WallSeconds, bm.ChildCalibSeconds, bm.ChildSearchSeconds, bm.WallSeconds-bm.ChildCalibSeconds-bm.ChildSearchSeconds, bm.LoadSeconds, bm.AlignChunks, bm.HeldChunks, bm.Ctx)
	for i, s := range bm.Steps {
		pass := fmt.Sprintf("pass to blk %d (blocks of %.1f whole chunk decodes)", s.Deepest, s.PassDepth)
		if s.Prefilled {
			pass = "statistics from the calibration pass"
		}
		fmt.Fprintf(w, "  step %d: drop blk %d, %d candidates fitted, %d scored (%d held-back chunks, blocks of %.1f whole decodes), %s: align %.1f s, score %.1f s\n",
			i+1, s.Drop, s.Candidates, s.Scored, s.HeldChunks, s.HeldDepth, pass, s.AlignSeconds, s.ScoreSeconds)
	}
	fmt.Fprintf(w, "  written %d bytes (report %d), output %d bytes; peak RSS %s, limit %s = tensors %s + 2 × %s + 256 MiB\n",
		bm.WrittenBytes, bm.ReportBytes, bm.OutputBytes, human(uint64(bm.PeakRSS)), human(uint64(bm.RSSLimit)), human(uint64(bm.TensorBytes)), human(uint64(bm.BlockF32Bytes)))
	p := bm.Projection
	if p == nil {
		return
	}
	s := p.Shape
	fmt.Fprintf(w, "\nprojection: merge --remove %d of a %s-shaped F16 model (%d blocks, embd %d, ffn %d, %d/%d heads, vocab %d, %.2fB params, %s) at %.1f GFLOP/s:\n",
		p.Remove, s.Name, s.Blocks, s.Embd, s.FFN, s.Heads, s.KVHeads, s.Vocab, p.Params/1e9, human(uint64(p.Bytes)), p.FLOPRate/1e9)
	for _, ph := range p.Phases {
		fmt.Fprintf(w, "  %-22s %9.0f s  %s\n", ph.Name, ph.Seconds, ph.Note)
	}
	fmt.Fprintf(w, "  %-22s %9.0f s  (%.1f h); calibration pass + rewrite %.0f s: ratio %.2f\n", "total", p.Seconds, p.Seconds/3600, p.Baseline, p.Ratio)
}
