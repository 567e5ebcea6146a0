package edit

// BenchmarkRewrite measures Rewrite on the 1 GB synth model against a plain
// copy of the file, and the peak RSS of each case in a child process
// (TestRewriteChild).
//
//	MKA_BENCH_1GB=1 go test ./merge -run XXX -bench BenchmarkRewrite -benchtime 1x

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/benchenv"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// Environment of a TestRewriteChild process.
const (
	childCaseEnv  = "MKA_REWRITE_CHILD" // copy, prune or fuse
	childModelEnv = "MKA_REWRITE_MODEL"
	childOutEnv   = "MKA_REWRITE_OUT"
)

// benchCases are the cases of BenchmarkRewrite, the copy first.
var benchCases = []string{"copy", "prune", "fuse"}

// benchPlan returns the plan of a case for a model of n blocks: prune drops
// a middle block (the blocks after it are copied and renumbered), fuse
// fuses the two middle blocks with λ = 0.5 (the rest is copied).
func benchPlan(tb testing.TB, name string, n int) *merge.Plan {
	tb.Helper()
	var steps []merge.Step
	switch name {
	case "prune":
		steps = []merge.Step{rwDrop(n / 2)}
	case "fuse":
		steps = []merge.Step{rwFuse(n/2-1, 0.5)}
	default:
		tb.Fatalf("no plan for case %q", name)
	}
	p, err := merge.NewPlan(name, n, steps)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// runBenchCase runs one case on the open model f (at path in).
func runBenchCase(tb testing.TB, name string, f *gguf.File, blocks *arch.Model, in, out string) error {
	if name == "copy" {
		return benchenv.CopyFile(in, out, true)
	}
	return Rewrite(context.Background(), f, blocks, benchPlan(tb, name, blocks.Count), out, FloatCodec{}, RewriteOptions{})
}

// TestRewriteChild runs one BenchmarkRewrite case in a process of its own
// and prints its peak RSS; it is skipped unless BenchmarkRewrite starts it.
func TestRewriteChild(t *testing.T) {
	name := os.Getenv(childCaseEnv)
	if name == "" {
		t.Skip("run by BenchmarkRewrite in a child process")
	}
	in, out := os.Getenv(childModelEnv), os.Getenv(childOutEnv)
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := arch.Inspect(f)
	if err != nil {
		t.Fatal(err)
	}
	hwm0 := benchenv.ProcStatusKB("VmHWM")
	if err := runBenchCase(t, name, f, b, in, out); err != nil {
		t.Fatal(err)
	}
	benchenv.PrintChildResult(map[string]int64{"hwm_before_kB": hwm0, "hwm_kB": benchenv.ProcStatusKB("VmHWM")})
}

// childRSS runs a case in a child process and returns its peak RSS before
// and after the case, in bytes.
func childRSS(b *testing.B, name, in, out string) (before, peak int64) {
	b.Helper()
	r := benchenv.RunChild(b, "TestRewriteChild", childCaseEnv+"="+name, childModelEnv+"="+in, childOutEnv+"="+out)
	return r["hwm_before_kB"] << 10, r["hwm_kB"] << 10
}

func BenchmarkRewrite(b *testing.B) {
	if os.Getenv("MKA_BENCH_1GB") == "" && benchenv.FreeBytes(os.TempDir()) < 3<<30 {
		b.Skip("needs 3 GB of free disk in the temporary folder (set MKA_BENCH_1GB=1 to run anyway)")
	}
	dir := b.TempDir()
	cfg, err := synth.Preset("1gb")
	if err != nil {
		b.Fatal(err)
	}
	in := filepath.Join(dir, "in.gguf")
	start := time.Now()
	if err := synth.Write(in, cfg); err != nil {
		b.Fatal(err)
	}
	f, err := gguf.Open(in)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	blocks, err := arch.Inspect(f)
	if err != nil {
		b.Fatal(err)
	}
	blockElems := block0Elements(f)
	blockF32 := int64(4 * blockElems)
	const mib = 1 << 20
	// A parent benchmark's log is not printed; the cases print this.
	header := fmt.Sprintf("model: %.1f MiB, %d blocks, generated in %v; one block is %.1f MiB in float32, so the check is peak RSS < baseline + 2 × %.1f + 64 = baseline + %.1f MiB",
		float64(f.Size)/mib, blocks.Count, time.Since(start).Round(time.Millisecond),
		float64(blockF32)/mib, float64(blockF32)/mib, float64(2*blockF32+64*mib)/mib)

	out := filepath.Join(dir, "out.gguf")
	var copyMBps float64
	type rss struct{ before, peak int64 }
	measured := map[string]rss{}
	for _, name := range benchCases {
		b.Run(name, func(b *testing.B) {
			var size int64
			for i := 0; i < b.N; i++ {
				os.Remove(out)
				if err := runBenchCase(b, name, f, blocks, in, out); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st, err := os.Stat(out)
			if err != nil {
				b.Fatal(err)
			}
			size = st.Size()
			sec := b.Elapsed().Seconds() / float64(b.N)
			mbps := float64(size) / 1e6 / sec
			b.ReportMetric(mbps, "MB/s")
			b.ReportMetric(float64(f.Size)/1e6/sec, "in-MB/s")
			if name == "copy" {
				copyMBps = mbps
			}
			if copyMBps > 0 {
				b.ReportMetric(mbps/copyMBps, "x-copy")
			}
			os.Remove(out)

			// Peak RSS, once per case, in a fresh process.
			r, ok := measured[name]
			if !ok {
				r.before, r.peak = childRSS(b, name, in, out)
				measured[name] = r
				os.Remove(out)
				limit := r.before + 2*blockF32 + 64*mib
				b.Logf("%s", header)
				b.Logf("%s: wrote %.1f MiB; peak RSS %.1f MiB (%.1f MiB before the case; limit %.1f MiB)",
					name, float64(size)/mib, float64(r.peak)/mib, float64(r.before)/mib, float64(limit)/mib)
				if r.peak > limit {
					b.Errorf("%s: peak RSS %.1f MiB exceeds %.1f MiB before the case + 2 × one block in float32 (%.1f MiB) + 64 MiB",
						name, float64(r.peak)/mib, float64(r.before)/mib, float64(blockF32)/mib)
				}
			}
			b.ReportMetric(float64(r.peak)/mib, "peak-RSS-MiB")
			b.ReportMetric(float64(blockF32)/mib, "block-f32-MiB")
		})
	}
}
