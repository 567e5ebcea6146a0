package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/internal/benchenv"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/quant"
	"github.com/mka-gguf/mka-gguf/simd"
)

// simdPart compares every Go kernel's selected implementation with the
// pure-Go one (simd.Speedup, slices of 4096 elements).
func simdPart(ctx context.Context, rep *Report) {
	for kv := range strings.FieldsSeq(simd.Kernels()) {
		if ctx.Err() != nil {
			return
		}
		name, impl, _ := strings.Cut(kv, "=")
		s := simd.Speedup(name, 4096)
		progress.Printf("bench: simd %s (%s): %.2fx pure Go\n", name, impl, s)
		rep.add(Result{Name: "simd." + name, Value: s, Unit: "x", BaselineName: "pure Go", BaselineValue: 1,
			Note: impl + ", 4096 elements"})
	}
}

// timed runs f after removing out and returns out's size in MB per
// second of f.
func timed(out string, bytesOf func() (int64, error), f func() error) (float64, error) {
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	t0 := time.Now()
	if err := f(); err != nil {
		return 0, err
	}
	sec := time.Since(t0).Seconds()
	n, err := bytesOf()
	if err != nil {
		return 0, err
	}
	os.Remove(out)
	return float64(n) / 1e6 / max(sec, 1e-9), nil
}

// cases runs named cases round-robin for rounds rounds and returns
// every case's samples.
func cases(ctx context.Context, what string, names []string, rounds int, run func(name string) (float64, error)) (map[string][]float64, error) {
	s := map[string][]float64{}
	for r := range rounds {
		var line []string
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			v, err := run(n)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", what, n, err)
			}
			s[n] = append(s[n], v)
			line = append(line, fmt.Sprintf("%s %.0f MB/s", n, v))
		}
		progress.Printf("bench: %s round %d/%d: %s\n", what, r+1, rounds, strings.Join(line, ", "))
	}
	return s, nil
}

// rewritePart times the streaming rewrite (shrink.Rewrite) with a
// one-fusion plan and a one-drop plan against a copy (synced, as Rewrite
// syncs), in MB written per second.
func rewritePart(ctx context.Context, rep *Report, path, dir string, rounds int) error {
	f, blocks, err := shrink.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if blocks.Count < 2 {
		return fmt.Errorf("rewrite: %s has %d blocks, needs 2", path, blocks.Count)
	}
	mid := blocks.Count / 2
	plans := map[string][]merge.Step{
		"fuse":  {{Kind: merge.StepFuse, Blocks: [2]int{mid - 1, mid}, Lambda: 0.5}},
		"prune": {{Kind: merge.StepDrop, Blocks: [2]int{mid, mid}}},
	}
	out := filepath.Join(dir, "bench-rewrite.gguf")
	size := func() (int64, error) {
		st, err := os.Stat(out)
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	s, err := cases(ctx, "rewrite", []string{"copy", "fuse", "prune"}, rounds, func(name string) (float64, error) {
		return timed(out, size, func() error {
			if name == "copy" {
				return benchenv.CopyFile(path, out, true)
			}
			p, err := merge.NewPlan(name, blocks.Count, plans[name])
			if err != nil {
				return err
			}
			return shrink.Rewrite(ctx, f, blocks, p, out, shrink.RewriteOptions{})
		})
	})
	if err != nil {
		return err
	}
	rep.add(Result{Name: "rewrite.copy", Value: best(s["copy"]), Unit: "MB/s", Samples: s["copy"],
		Note: "io.Copy + fsync, MB written/s"})
	rep.add(Result{Name: "rewrite.fuse", Value: best(s["fuse"]), Unit: "MB/s", Samples: s["fuse"],
		BaselineName: "rewrite.copy", BaselineValue: best(s["copy"]), Note: fmt.Sprintf("blocks %d+%d fused, MB written/s", mid-1, mid)})
	rep.add(Result{Name: "rewrite.prune", Value: best(s["prune"]), Unit: "MB/s", Samples: s["prune"],
		BaselineName: "rewrite.copy", BaselineValue: best(s["copy"]), Note: fmt.Sprintf("block %d dropped, MB written/s", mid)})
	return nil
}

// quantPart times llama.cpp's quantizer (Q8_0, Q4_K_M) against a copy, in
// MB of input per second, then compares the peak memory of "mka-gguf
// quantize" with llama-quantize's (quantRSS).
func quantPart(ctx context.Context, o *Options, rep *Report, path, dir string) error {
	threads, rounds := o.Threads, o.Rounds
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	in := func() (int64, error) { return st.Size(), nil }
	out := filepath.Join(dir, "bench-quant.gguf")
	types := []string{"Q8_0", "Q4_K_M"}
	s, err := cases(ctx, "quant", append([]string{"copy"}, types...), rounds, func(name string) (float64, error) {
		return timed(out, in, func() error {
			if name == "copy" {
				return benchenv.CopyFile(path, out, false)
			}
			ft, err := quant.Parse(name)
			if err != nil {
				return err
			}
			return quant.File(path, out, ft, quant.Options{Threads: threads})
		})
	})
	if err != nil {
		return err
	}
	rep.add(Result{Name: "quant.copy", Value: best(s["copy"]), Unit: "MB/s", Samples: s["copy"], Note: "io.Copy, MB read/s"})
	for _, t := range types {
		rep.add(Result{Name: "quant." + t, Value: best(s[t]), Unit: "MB/s", Samples: s[t],
			BaselineName: "quant.copy", BaselineValue: best(s["copy"]), Note: "llama.cpp quantizer, MB read/s"})
	}
	return quantRSS(ctx, o, rep, path, dir, types)
}
