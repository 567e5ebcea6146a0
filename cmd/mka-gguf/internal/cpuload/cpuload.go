// Package cpuload watches how many CPUs other processes keep busy, so that
// ggml's threads can be fewer while they do (cgo.SetThreadLimit). ggml's
// workers spin at every barrier of a graph: beside a busy process on as
// many cores as threads, a thread that waits for its core holds up the
// others, which spin on theirs, and a merge took 2.47× its time alone
// where a fair share of the cores would cost 1.5× (issue 28).
package cpuload

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// Sample is one reading of the CPU time counters, in clock ticks.
type Sample struct {
	CPUs  int    // CPUs the kernel counts (cpuN lines of /proc/stat)
	Total uint64 // all CPUs' time, idle included
	Busy  uint64 // all CPUs' time not idle nor waiting for I/O
	Own   uint64 // this process's user and system time
}

// ParseStat reads the first line ("cpu ...") and the cpuN lines of
// /proc/stat's text.
func ParseStat(text []byte) (s Sample, err error) {
	for _, line := range bytes.Split(text, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 || !bytes.HasPrefix(f[0], []byte("cpu")) {
			continue
		}
		if len(f[0]) > 3 {
			s.CPUs++
			continue
		}
		if len(f) < 5 {
			return s, errors.New("/proc/stat: short cpu line")
		}
		// user nice system idle iowait irq softirq steal (guest time is
		// already in user and nice).
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return s, fmt.Errorf("/proc/stat: %w", err)
			}
			s.Total += n
			if i != 3 && i != 4 {
				s.Busy += n
			}
		}
	}
	if s.CPUs == 0 || s.Total == 0 {
		return s, errors.New("/proc/stat: no cpu lines")
	}
	return s, nil
}

// ParseSelfStat returns utime + stime of /proc/self/stat's text (fields 14
// and 15, counted after the command name in parentheses).
func ParseSelfStat(text []byte) (uint64, error) {
	i := bytes.LastIndexByte(text, ')')
	if i < 0 {
		return 0, errors.New("/proc/self/stat: no command name")
	}
	f := bytes.Fields(text[i+1:])
	if len(f) < 13 {
		return 0, errors.New("/proc/self/stat: short")
	}
	var t uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/stat: %w", err)
		}
		t += n
	}
	return t, nil
}

// Read takes a Sample of this machine and process.
func Read() (Sample, error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Sample{}, err
	}
	s, err := ParseStat(stat)
	if err != nil {
		return s, err
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return s, err
	}
	s.Own, err = ParseSelfStat(self)
	return s, err
}

// Others returns the CPUs that other processes kept busy between a and b:
// (busy − own time) / elapsed time per CPU, in [0, CPUs].
func Others(a, b Sample) float64 {
	if b.Total <= a.Total || b.CPUs == 0 {
		return 0
	}
	elapsed := float64(b.Total-a.Total) / float64(b.CPUs)
	busy := float64(b.Busy-a.Busy) - float64(b.Own-a.Own)
	return min(float64(b.CPUs), max(0, busy/elapsed))
}

// Threads returns the threads of want to use when others of cpus CPUs
// are busy: the free CPUs rounded to the nearest whole, at least 1.
func Threads(want, cpus int, others float64) int {
	free := int(math.Round(float64(cpus) - others))
	return max(1, min(want, free))
}

// Watcher samples the machine every interval and keeps the CPUs other
// processes kept busy, smoothed over the last samples (half each).
type Watcher struct {
	cpus   int
	others atomic.Uint64 // float64 bits
	stop   chan struct{}
}

// Start starts a Watcher, or returns nil when the counters cannot be read
// (not Linux): a nil Watcher's Limit allows every thread.
func Start(interval time.Duration) *Watcher {
	s, err := Read()
	if err != nil {
		return nil
	}
	w := &Watcher{cpus: s.CPUs, stop: make(chan struct{})}
	go w.run(s, interval)
	return w
}

func (w *Watcher) run(prev Sample, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		s, err := Read()
		if err != nil {
			continue
		}
		o := 0.5*math.Float64frombits(w.others.Load()) + 0.5*Others(prev, s)
		w.others.Store(math.Float64bits(o))
		prev = s
	}
}

// Others returns the smoothed CPUs that other processes keep busy.
func (w *Watcher) Others() float64 {
	if w == nil {
		return 0
	}
	return math.Float64frombits(w.others.Load())
}

// Limit returns the threads of want to use now (Threads).
func (w *Watcher) Limit(want int) int {
	if w == nil {
		return want
	}
	return Threads(want, w.cpus, w.Others())
}

// Stop stops the sampling.
func (w *Watcher) Stop() {
	if w != nil {
		close(w.stop)
	}
}
