package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// rssPeak is the peak of a process's resident memory by kind, sampled,
// and the last VmHWM seen.
type rssPeak struct{ anon, file, hwm int64 }

// watchRSS samples RssAnon, RssFile and VmHWM of /proc/<pid>/status every
// interval until stop is closed, then sends the peaks on the returned
// channel. The kernel keeps only the peak of their sum (VmHWM, ru_maxrss),
// which counts the pages of a memory-mapped model as resident. VmHWM is
// that of the program the process runs now (a new one at each exec), so
// the sampled value misses at most the growth of its last interval.
func watchRSS(pid int, interval time.Duration, stop <-chan struct{}) <-chan rssPeak {
	done := make(chan rssPeak, 1)
	go func() {
		var p rssPeak
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if a, f, h, ok := readRSS(pid); ok {
				p.anon, p.file, p.hwm = max(p.anon, a), max(p.file, f), max(p.hwm, h)
			}
			select {
			case <-stop:
				done <- p
				return
			case <-t.C:
			}
		}
	}()
	return done
}

// readRSS returns RssAnon, RssFile and VmHWM of process pid in bytes.
func readRSS(pid int) (anon, file, hwm int64, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch k {
		case "RssAnon":
			dst = &anon
		case "RssFile":
			dst = &file
		case "VmHWM":
			dst = &hwm
		}
		if !found || dst == nil {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		*dst = kb << 10
		n++
	}
	return anon, file, hwm, n == 3
}
