package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/klauspost/cpuid/v2"
	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// threads returns --threads, or the number of physical cores.
func threads(c *cli.Context) int {
	if n := c.Int("threads"); n > 0 {
		return n
	}
	return defaultThreads()
}

// defaultThreads is the number of physical cores this process may use:
// the CPUs in its affinity mask (runtime.NumCPU) divided by the threads per
// core, since llama.cpp gains nothing from SMT siblings. cpuid's own core
// count describes the host, which in a VM or container can be far more
// than the process may use (254 host cores for a 2-CPU VM here).
func defaultThreads() int {
	n := runtime.NumCPU()
	if tpc := cpuid.CPU.ThreadsPerCore; tpc > 1 && n >= 2*tpc {
		n /= tpc
	}
	return max(1, n)
}

// checkModel reads path with our GGUF reader, so that a bad file gets one
// clear line naming it before llama.cpp sees it; with blocks it also refuses
// architectures whose decoder blocks cannot be analysed or merged.
func checkModel(path string, blocks bool) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if blocks {
		_, err = arch.Inspect(f)
	}
	return err
}

// tempBeside returns the hidden temporary path ".<name>.<tag>" in out's
// folder, where an output is built before it is renamed into place (a
// rename within one folder is atomic).
func tempBeside(out, tag string) string {
	dir, name := filepath.Split(out)
	return filepath.Join(dir, "."+name+"."+tag)
}

// writeVerified builds out through a temporary file beside it: produce
// writes the file, llama.cpp must load it with the given block count and
// decode (unless verify is false), and only then is it renamed to out. The
// temporary file is removed on any error and on cancellation (Ctrl-C).
// what names the output in the error of a failed check ("written",
// "quantized").
func writeVerified(ctx context.Context, out, what string, blocks int, verify bool, produce func(tmp string) error) error {
	tmp := tempBeside(out, "mka-tmp")
	defer os.Remove(tmp)
	if err := produce(tmp); err != nil {
		return err
	}
	if verify {
		if err := verifyModel(tmp, blocks); err != nil {
			return fmt.Errorf("%s: the %s model failed the llama.cpp check: %w", out, what, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
