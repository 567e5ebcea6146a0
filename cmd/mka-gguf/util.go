package main

import (
	"runtime"

	"github.com/klauspost/cpuid/v2"
	"github.com/urfave/cli/v2"
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
