package quant

// BenchmarkQuantize1GB measures File on the 1 GB F16 synth model against a
// plain copy of the file, and the peak RSS of each case in a child process
// (TestQuantizeChild).
//
//	MKA_BENCH_1GB=1 go test ./quant -run XXX -bench Quantize1GB -benchtime 1x

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/gguf/synth"
	"github.com/mka-gguf/mka-gguf/internal/benchenv"
)

// Environment of a TestQuantizeChild process.
const (
	quantChildCaseEnv  = "MKA_QUANT_CHILD" // copy or a file type name
	quantChildModelEnv = "MKA_QUANT_MODEL"
	quantChildOutEnv   = "MKA_QUANT_OUT"
)

// quantBenchCases are the cases of BenchmarkQuantize1GB, the copy first.
var quantBenchCases = []string{"copy", "Q8_0", "Q4_K_M"}

// runQuantCase runs one case: a copy, or File with all threads.
func runQuantCase(name, in, out string) error {
	if name == "copy" {
		return benchenv.CopyFile(in, out, false)
	}
	ft, err := Parse(name)
	if err != nil {
		return err
	}
	return File(in, out, ft, Options{Threads: 0})
}

// TestQuantizeChild runs one BenchmarkQuantize1GB case in a process of its
// own and prints its duration and peak RSS; it is skipped unless
// BenchmarkQuantize1GB starts it.
func TestQuantizeChild(t *testing.T) {
	name := os.Getenv(quantChildCaseEnv)
	if name == "" {
		t.Skip("run by BenchmarkQuantize1GB in a child process")
	}
	in, out := os.Getenv(quantChildModelEnv), os.Getenv(quantChildOutEnv)
	start := time.Now()
	if err := runQuantCase(name, in, out); err != nil {
		t.Fatal(err)
	}
	ns := time.Since(start).Nanoseconds()
	benchenv.PrintChildResult(map[string]int64{"ns": ns, "hwm_kB": benchenv.ProcStatusKB("VmHWM")})
}

// quantChild runs a case in a child process and returns how long the case
// took and the child's peak RSS in bytes.
func quantChild(b *testing.B, name, in, out string) (time.Duration, int64) {
	b.Helper()
	r := benchenv.RunChild(b, "TestQuantizeChild", quantChildCaseEnv+"="+name, quantChildModelEnv+"="+in, quantChildOutEnv+"="+out)
	return time.Duration(r["ns"]), r["hwm_kB"] << 10
}

func BenchmarkQuantize1GB(b *testing.B) {
	if os.Getenv("MKA_BENCH_1GB") == "" {
		b.Skip("set MKA_BENCH_1GB=1 to run (writes a 1 GB model)")
	}
	if free := benchenv.FreeBytes(os.TempDir()); free < 4<<30 {
		b.Skipf("needs 4 GB of free disk in %s, has %d MiB", os.TempDir(), free>>20)
	}
	dir, err := os.MkdirTemp("", "mka-quant-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg, err := synth.Preset("1gb")
	if err != nil {
		b.Fatal(err)
	}
	in := filepath.Join(dir, "in.gguf")
	start := time.Now()
	if err := synth.Write(in, cfg); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(in)
	if err != nil {
		b.Fatal(err)
	}
	size := st.Size()
	const mib = 1 << 20
	// A parent benchmark's log is not printed; the cases print this.
	header := fmt.Sprintf("model: %.1f MiB F16, generated in %v", float64(size)/mib, time.Since(start).Round(time.Millisecond))

	out := filepath.Join(dir, "out.gguf")
	var copyMBps float64
	for _, name := range quantBenchCases {
		b.Run(name, func(b *testing.B) {
			b.Log(header)
			var total time.Duration
			var peak int64
			for i := 0; i < b.N; i++ {
				d, h := quantChild(b, name, in, out)
				total += d
				peak = max(peak, h)
				if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
					b.Fatal(err)
				}
			}
			mbps := float64(size) / 1e6 / (total.Seconds() / float64(b.N))
			b.ReportMetric(mbps, "MB/s")
			b.ReportMetric(float64(peak)/mib, "peak-RSS-MiB")
			if name == "copy" {
				copyMBps = mbps
			} else if copyMBps > 0 {
				b.ReportMetric(mbps/copyMBps, "ratio-to-copy")
			}
			b.Logf("%s: %.1f MB/s of input, peak RSS %.1f MiB", name, mbps, float64(peak)/mib)
		})
	}
}
