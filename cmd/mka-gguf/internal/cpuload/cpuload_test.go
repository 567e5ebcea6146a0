package cpuload

import (
	"math"
	"runtime"
	"testing"
	"time"
)

const stat1 = `cpu  100 5 50 800 10 1 2 3 7 0
cpu0 50 2 25 400 5 1 1 2 0 0
cpu1 50 3 25 400 5 0 1 1 0 0
intr 12345
ctxt 999
`

// stat2 is stat1 100 ticks per CPU later: 150 ticks busy of 200.
const stat2 = `cpu  220 5 80 840 20 1 2 3 7 0
cpu0 110 2 40 420 10 1 1 2 0 0
cpu1 110 3 40 420 10 0 1 1 0 0
`

func TestParseAndOthers(t *testing.T) {
	a, err := ParseStat([]byte(stat1))
	if err != nil {
		t.Fatal(err)
	}
	// Busy: user nice system irq softirq steal; guest (7) is in user.
	if a.CPUs != 2 || a.Total != 971 || a.Busy != 161 {
		t.Fatalf("parsed %+v, want 2 CPUs, total 971, busy 161", a)
	}
	b, err := ParseStat([]byte(stat2))
	if err != nil {
		t.Fatal(err)
	}
	a.Own, b.Own = 1000, 1050 // this process: 50 of the 150 busy ticks
	if o := Others(a, b); math.Abs(o-1) > 1e-12 {
		t.Fatalf("others %g CPUs, want 1 (100 busy ticks of others in 100 ticks per CPU)", o)
	}
	if o := Others(b, a); o != 0 {
		t.Fatalf("counters going back give %g, want 0", o)
	}
	own, err := ParseSelfStat([]byte("42 (my (odd) name) R 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0 5"))
	if err != nil || own != 150 {
		t.Fatalf("utime+stime %d (%v), want 150", own, err)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2\n"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) accepted it", bad)
		}
	}
	if _, err := ParseSelfStat([]byte("42 (x) R 1 2")); err == nil {
		t.Error("ParseSelfStat accepted a short line")
	}
}

// Threads: all asked for on an idle machine, one fewer per CPU others
// keep busy (to the nearest whole), never below one or above want.
func TestThreads(t *testing.T) {
	for _, c := range []struct {
		want, cpus int
		others     float64
		threads    int
	}{
		{2, 2, 0, 2}, {2, 2, 0.4, 2}, {2, 2, 0.6, 1}, {2, 2, 1, 1}, {2, 2, 2, 1},
		{8, 16, 3, 8}, {8, 16, 9.6, 6}, {4, 2, 0, 2}, {1, 2, 0, 1},
	} {
		if got := Threads(c.want, c.cpus, c.others); got != c.threads {
			t.Errorf("Threads(%d, %d, %g) = %d, want %d", c.want, c.cpus, c.others, got, c.threads)
		}
	}
	var w *Watcher
	if w.Limit(3) != 3 || w.Others() != 0 {
		t.Error("a nil Watcher limits threads")
	}
}

// Read on this machine: this process's own time grows while it spins,
// and the machine's busy time grows by at least as much.
func TestReadOwnTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	a, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	b, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if b.Own <= a.Own || b.Busy-a.Busy+2 < b.Own-a.Own { // 2 ticks of accounting slack
		t.Fatalf("own time %d → %d, busy %d → %d", a.Own, b.Own, a.Busy, b.Busy)
	}
	if o := Others(a, b); o < 0 || o > float64(b.CPUs) {
		t.Fatalf("others %g outside [0, %d]", o, b.CPUs)
	}
}
