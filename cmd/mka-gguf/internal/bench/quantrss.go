package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

// llamaQuantizeEnv names llama.cpp's llama-quantize for the quant part's
// memory comparison when it is not "llama-quantize" on PATH.
const llamaQuantizeEnv = "MKA_LLAMA_QUANTIZE"

// quantRSSGoal is the most peak memory "mka-gguf quantize" may take, as a
// multiple of llama-quantize's on the same model and type.
const quantRSSGoal = 1.2

// quantRSS runs "mka-gguf quantize --no-verify" (this binary, as a child
// process) and llama-quantize one after the other on path to each of
// types with the same threads, and adds each type's peak memory as ours /
// theirs (VmHWM, goal at most quantRSSGoal; RssAnon). Without
// llama-quantize it adds a skipped row.
func quantRSS(ctx context.Context, o *Options, rep *Report, path, dir string, types []string) error {
	tool := llamaTool(rep, "llama-quantize", llamaQuantizeEnv, "llama.cpp-tools", Result{Name: "quant.rss", Unit: "MiB"})
	if tool == "" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("quant rss: %w", err)
	}
	ours, theirs := filepath.Join(dir, "bench-quant-ours.gguf"), filepath.Join(dir, "bench-quant-theirs.gguf")
	defer os.Remove(ours)
	defer os.Remove(theirs)
	th := strconv.Itoa(o.Threads)
	for _, t := range types {
		a, err := runPeak(ctx, exe, append(slices.Clone(o.Global), "quantize", "--threads", th, "--no-verify", "--force", path, ours, t))
		if err != nil {
			return fmt.Errorf("quant rss: %w", err)
		}
		b, err := runPeak(ctx, tool, []string{path, theirs, t, th})
		if err != nil {
			return fmt.Errorf("quant rss: %w", err)
		}
		same, err := sameBytes(ours, theirs)
		if err != nil {
			return fmt.Errorf("quant rss: %w", err)
		}
		progress.Printf("bench: quant rss %s: mka-gguf %s (anon %s, file %s), llama-quantize %s (anon %s, file %s)\n", t,
			files.Human(uint64(a.hwm)), files.Human(uint64(a.anon)), files.Human(uint64(a.file)),
			files.Human(uint64(b.hwm)), files.Human(uint64(b.anon)), files.Human(uint64(b.file)))
		for _, r := range quantRSSRows(t, a, b, same, tool) {
			rep.add(r)
		}
	}
	return nil
}

// quantRSSRows are the rows of one type's memory comparison: peak VmHWM
// and peak RssAnon, ours against llama-quantize's, in MiB.
func quantRSSRows(typ string, ours, theirs rssPeak, same bool, tool string) []Result {
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	out := "outputs differ"
	if same {
		out = "outputs identical"
	}
	note := fmt.Sprintf("mka-gguf quantize --no-verify vs %s, %s; RssFile %.0f vs %.0f MiB", tool, out, mib(ours.file), mib(theirs.file))
	return []Result{
		{Name: "quant.rss." + typ, Value: mib(ours.hwm), Unit: "MiB", BaselineName: "llama-quantize VmHWM", BaselineValue: mib(theirs.hwm),
			Goal: quantRSSGoal, AtMost: true, Note: "peak RSS (VmHWM), " + note},
		{Name: "quant.rss_anon." + typ, Value: mib(ours.anon), Unit: "MiB", BaselineName: "llama-quantize RssAnon", BaselineValue: mib(theirs.anon),
			Goal: quantRSSGoal, AtMost: true, Note: "peak RssAnon, sampled every 20 ms"},
	}
}

// runPeak runs bin with args and returns its peak memory, sampled from
// /proc every 20 ms. Not its ru_maxrss: Go starts a child with CLONE_VM,
// and at exec the kernel carries the peak RSS of the memory it shared
// (this process's) into the child's ru_maxrss, so a child smaller than
// this process reports this process's peak.
func runPeak(ctx context.Context, bin string, args []string) (rssPeak, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var tail tailBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &tail
	progress.Printf("bench: quant rss: %s %s\n", filepath.Base(bin), strings.Join(args, " "))
	var p rssPeak
	err := cmd.Start()
	if err == nil {
		stop := make(chan struct{})
		peak := watchRSS(cmd.Process.Pid, 20*time.Millisecond, stop)
		err = cmd.Wait()
		close(stop)
		p = <-peak
	}
	if err != nil {
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		return p, fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, lastLine(string(tail.b)))
	}
	if p.hwm == 0 {
		return p, fmt.Errorf("%s: no VmHWM sampled from /proc", bin)
	}
	return p, nil
}

// sameBytes reports whether files a and b hold the same bytes.
func sameBytes(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		doneA := errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF)
		doneB := errors.Is(eb, io.EOF) || errors.Is(eb, io.ErrUnexpectedEOF)
		if ea != nil && !doneA {
			return false, ea
		}
		if eb != nil && !doneB {
			return false, eb
		}
		if doneA || doneB {
			return doneA == doneB, nil
		}
	}
}
