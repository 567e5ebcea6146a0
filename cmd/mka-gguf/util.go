package main

import (
	"path/filepath"
	"runtime"

	"github.com/klauspost/cpuid/v2"
	"github.com/urfave/cli/v2"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
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
		_, err = merge.InspectBlocks(f)
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
