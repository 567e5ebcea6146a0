package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// rssPeak is the peak of a process's resident memory by kind, sampled.
type rssPeak struct{ anon, file int64 }

// watchRSS samples RssAnon and RssFile of /proc/<pid>/status every
// interval until stop is closed, then sends the peaks on the returned
// channel. The kernel keeps only the peak of their sum (VmHWM, ru_maxrss),
// which counts the pages of a memory-mapped model as resident.
func watchRSS(pid int, interval time.Duration, stop <-chan struct{}) <-chan rssPeak {
	done := make(chan rssPeak, 1)
	go func() {
		var p rssPeak
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if a, f, ok := readRSS(pid); ok {
				p.anon, p.file = max(p.anon, a), max(p.file, f)
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

// readRSS returns RssAnon and RssFile of process pid in bytes.
func readRSS(pid int) (anon, file int64, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), ":")
		if !found || (k != "RssAnon" && k != "RssFile") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if k == "RssAnon" {
			anon = kb << 10
		} else {
			file = kb << 10
		}
		n++
	}
	return anon, file, n == 2
}
