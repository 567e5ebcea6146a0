package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/bench"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/internal/benchenv"
)

// TestBenchMerge runs the merge part on the merge-tiny model (16 blocks)
// and checks its results, the child's measurements and the projection.
func TestBenchMerge(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench.json")
	// One thread: on a loaded machine ggml's spinning workers make a tiny
	// model's decodes many times slower with two.
	args := []string{"bench", "--size", "merge-tiny", "--only", "merge", "--threads", "1", "--dir", dir, "--json-file", out}
	stdout, stderr, code := runLong(t, 10*time.Minute, args...)
	wantOK(t, args, stdout, stderr, code)
	r, res := readBenchReport(t, out)
	if m := r.Model; m == nil || m.Blocks != 16 || m.Generated != "merge-tiny" {
		t.Fatalf("model %+v, want the generated merge-tiny model (16 blocks)", m)
	}
	for name := range res {
		if !strings.HasPrefix(name, "merge.") {
			t.Errorf("result %s not asked for by --only merge", name)
		}
	}
	cal, rw, wall := res["merge.calibrate"], res["merge.rewrite"], res["merge.wall"]
	if wall.BaselineName != "calibrate+rewrite" || math.Abs(wall.BaselineValue-(cal.Value+rw.Value)) > 1e-9*wall.BaselineValue ||
		wall.Goal != 2.5 || !wall.AtMost {
		t.Errorf("merge.wall = %+v, want a ratio against merge.calibrate + merge.rewrite = %v + %v, goal <= 2.5", wall, cal.Value, rw.Value)
	}
	bm := r.Merge
	if bm == nil {
		t.Fatal("no merge section in the report")
	}
	if w := res["merge.written"]; w.Value != float64(bm.WrittenBytes)/1e6 || w.BaselineValue != float64(bm.OutputBytes)/1e6 || w.Goal != 1.05 || !w.AtMost {
		t.Errorf("merge.written = %+v, want written %d / output %d bytes, goal <= 1.05", w, bm.WrittenBytes, bm.OutputBytes)
	}
	if p := res["merge.peak_rss"]; p.Value != float64(bm.PeakRSS)/(1<<20) || p.BaselineValue != float64(bm.RSSLimit)/(1<<20) || p.Goal != 1 || !p.AtMost {
		t.Errorf("merge.peak_rss = %+v, want peak %d / limit %d bytes, goal <= 1", p, bm.PeakRSS, bm.RSSLimit)
	}
	if p := res["merge.peak_anon"]; p.Value != float64(bm.PeakAnon)/(1<<20) || p.BaselineValue != float64(bm.AnonLimit)/(1<<20) || p.Goal != 1 || !p.AtMost {
		t.Errorf("merge.peak_anon = %+v, want peak %d / limit %d bytes, goal <= 1", p, bm.PeakAnon, bm.AnonLimit)
	}
	// The child maps the model: its weights' pages are resident file
	// pages (RssFile, counted in VmHWM), its own memory is anonymous.
	if bm.PeakAnon <= 0 || bm.PeakAnon > bm.PeakRSS || bm.PeakFile < bm.TensorBytes || bm.AnonLimit != 2*bm.BlockF32Bytes+512<<20 {
		t.Errorf("peak RssAnon %d, RssFile %d, VmHWM %d, tensors %d, anon limit %d: want 0 < anon <= VmHWM, file >= tensors, limit 2 blocks + 512 MiB",
			bm.PeakAnon, bm.PeakFile, bm.PeakRSS, bm.TensorBytes, bm.AnonLimit)
	}
	// The child wrote its output at least once; every weight was resident
	// (mapped pages count), so its peak RSS holds them.
	if bm.OutputBytes <= 0 || bm.OutputBytes >= r.Model.Bytes || bm.WrittenBytes < bm.OutputBytes {
		t.Errorf("output %d bytes (model %d), written %d: want 0 < output < model <= written", bm.OutputBytes, r.Model.Bytes, bm.WrittenBytes)
	}
	if bm.TensorBytes <= 0 || bm.TensorBytes > r.Model.Bytes || bm.PeakRSS < bm.TensorBytes {
		t.Errorf("tensors %d bytes (file %d), peak RSS %d: want the tensors inside the file and the RSS above them", bm.TensorBytes, r.Model.Bytes, bm.PeakRSS)
	}
	if bm.RSSLimit != bm.TensorBytes+2*bm.BlockF32Bytes+256<<20 {
		t.Errorf("RSS limit %d, want %d + 2 × %d + 256 MiB", bm.RSSLimit, bm.TensorBytes, bm.BlockF32Bytes)
	}
	// The search: every step fits every current block but block 0 (d = 64:
	// the statistics fit their budget) and scores the --candidates best on
	// held-back text, raced; step 1's statistics come from the calibration
	// pass.
	if len(bm.Steps) != 4 || bm.HeldChunks < 2 || bm.AlignChunks != 64 || bm.Ctx != 256 {
		t.Fatalf("merge: %d steps, %d held-back chunks, %d alignment chunks of %d tokens; want 4 steps, 64 chunks of 256", len(bm.Steps), bm.HeldChunks, bm.AlignChunks, bm.Ctx)
	}
	k := shrink.Defaults().Candidates
	for i, s := range bm.Steps {
		if s.Candidates != 15-i || s.Scored != k || s.Deepest < 15-i || s.Deepest > 15 || !(s.AlignSeconds > 0 && s.ScoreSeconds > 0) {
			t.Errorf("step %d: %+v, want %d candidates, %d scored, a pass to a block in [%d, 15]", i+1, s, 15-i, k, 15-i)
		}
		if s.Prefilled != (i == 0) || s.HeldChunks < bm.HeldChunks || s.HeldChunks > k*bm.HeldChunks {
			t.Errorf("step %d: prefilled %v, %d held-back chunks decoded; want prefilled only at step 1 and %d to %d chunks", i+1, s.Prefilled, s.HeldChunks, bm.HeldChunks, k*bm.HeldChunks)
		}
		// Every held-back chunk scored has logits, and at step 1 IN's
		// decode of each for the quality check; resumed decodes and their
		// captures run at most the blocks of whole ones.
		logits := s.HeldChunks
		if i == 0 {
			logits += bm.HeldChunks
		}
		if s.HeldLogits != logits || !(s.HeldDepth > 0 && s.HeldDepth <= float64(logits)) {
			t.Errorf("step %d: %d chunks with logits (want %d), blocks of %.2f whole decodes, for %d held-back chunks scored", i+1, s.HeldLogits, logits, s.HeldDepth, s.HeldChunks)
		}
		// An alignment pass runs at most every block of its chunks.
		if !s.Prefilled && !(s.PassDepth > 0 && s.PassDepth <= float64(bm.AlignChunks)) {
			t.Errorf("step %d: alignment pass of %.2f whole chunk decodes, for %d chunks", i+1, s.PassDepth, bm.AlignChunks)
		}
	}
	if slices.Contains(bm.Command, "--force") || !slices.Contains(bm.Command, "--remove") {
		t.Errorf("child command %v", bm.Command)
	}

	// The projection: Llama-3-8B has 8.03 B parameters; the phases add up.
	p := bm.Projection
	if p == nil {
		t.Fatal("no projection")
	}
	if p.Shape.Name != "Llama-3-8B" || p.Params < 8.02e9 || p.Params > 8.04e9 || p.Remove != 8 || !(p.FLOPRate > 0) {
		t.Errorf("projection %s: %.4g params, remove %d, %v FLOP/s; want Llama-3-8B, 8.03e9, 8", p.Shape.Name, p.Params, p.Remove, p.FLOPRate)
	}
	var sum float64
	phase := map[string]float64{}
	for _, ph := range p.Phases {
		if ph.Seconds < 0 || math.IsNaN(ph.Seconds) {
			t.Errorf("phase %s: %v s", ph.Name, ph.Seconds)
		}
		phase[ph.Name] = ph.Seconds
		sum += ph.Seconds
		if !strings.Contains(stdout, ph.Name) {
			t.Errorf("stdout lacks phase %q", ph.Name)
		}
	}
	for _, n := range []string{"calibrate", "alignment passes", "held-back scoring", "rewrite"} {
		if !(phase[n] > 0) {
			t.Errorf("phase %q: %v s, want > 0", n, phase[n])
		}
	}
	// 7 alignment passes of 64 chunks (step 1's statistics come from the
	// calibration pass) against one calibration pass of 128 over the same
	// blocks: 3.5×, times the fraction of the blocks the child's passes ran
	// (they stop after the deepest candidate).
	var frac float64
	for _, s := range bm.Steps[1:] {
		frac += s.PassDepth / float64(bm.AlignChunks) / float64(len(bm.Steps)-1)
	}
	if a, c := phase["alignment passes"], phase["calibrate"]; !(frac > 0 && frac <= 1) || math.Abs(a/c-3.5*frac) > 1e-9 {
		t.Errorf("alignment passes %v s, calibration %v s: want 7 × 64 / 128 × %.3f (the passes' depth) = %.3f×", a, c, frac, 3.5*frac)
	}
	t.Logf("the child's alignment passes ran %.1f %% of the blocks", 100*frac)
	if math.Abs(sum-p.Seconds) > 1e-9*sum || math.Abs(p.Baseline-(phase["calibrate"]+phase["rewrite"])) > 1e-9*p.Baseline ||
		math.Abs(p.Ratio-p.Seconds/p.Baseline) > 1e-9*p.Ratio {
		t.Errorf("projection: phases sum to %v, total %v, baseline %v, ratio %v", sum, p.Seconds, p.Baseline, p.Ratio)
	}
	if pr := res["merge.projected.Llama-3-8B"]; pr.Value != p.Seconds || pr.BaselineValue != p.Baseline {
		t.Errorf("merge.projected.Llama-3-8B = %+v, want %v / %v", pr, p.Seconds, p.Baseline)
	}
	if !strings.Contains(stdout, "projection: merge --remove 8 of a Llama-3-8B-shaped") {
		t.Errorf("stdout lacks the projection:\n%s", stdout)
	}
	// The merge wrote nothing but its output (and removed its temporary
	// file); bench removed the output.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"bench-merge-tiny.gguf", "bench.json"}; !slices.Equal(names, want) {
		t.Errorf("work folder holds %v, want %v", names, want)
	}
}

// runLong runs the binary like run, with a longer time limit (a whole
// merge runs in the child).
func runLong(t *testing.T, limit time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBinFor(t, limit, bin, args...)
}

// BenchmarkMerge runs the merge part of bench (a whole default merge
// against one calibration pass and one rewrite, and the Llama-3-8B
// projection) on the merge-tiny model, or on merge1gb (18 blocks, 1.02 GiB;
// about an hour on 2 cores) with MKA_BENCH_1GB=1:
//
//	MKA_BENCH_1GB=1 go test ./cmd/mka-gguf -run XXX -bench BenchmarkMerge -benchtime 1x -timeout 3h
func BenchmarkMerge(b *testing.B) {
	size := "merge-tiny"
	if os.Getenv("MKA_BENCH_1GB") != "" {
		size = "merge1gb"
		if free := benchenv.FreeBytes(os.TempDir()); free >= 0 && free < 3<<30 {
			b.Skipf("needs 3 GB of free disk in %s, has %d bytes", os.TempDir(), free)
		}
	}
	var r bench.Report
	for range b.N {
		out := filepath.Join(b.TempDir(), "bench.json")
		cmd := exec.Command(bin, "--quiet", "bench", "--only", "merge", "--size", size, "--json-file", out)
		o, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %v\n%s", cmd.Args, err, o)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(data, &r); err != nil {
			b.Fatal(err)
		}
		b.Logf("%s", o)
	}
	for _, m := range []struct{ result, unit string }{
		{"merge.wall", "wall/(calib+rewrite)"},
		{"merge.written", "written/output"},
		{"merge.peak_rss", "rss/limit"},
		{"merge.projected.Llama-3-8B", "8B-wall/(calib+rewrite)"},
	} {
		i := slices.IndexFunc(r.Results, func(x bench.Result) bool { return x.Name == m.result })
		if i < 0 {
			b.Fatalf("no result %s", m.result)
		}
		b.ReportMetric(r.Results[i].Ratio, m.unit)
	}
	if r.Merge != nil && r.Merge.Projection != nil {
		b.ReportMetric(r.Merge.Projection.Seconds, "8B-s")
	}
}
