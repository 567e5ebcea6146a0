package bench

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// watchRSS on this process sees 64 MiB of touched heap as anonymous memory,
// and VmHWM at least the peak of both kinds.
func TestWatchRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	stop := make(chan struct{})
	peak := watchRSS(os.Getpid(), 5*time.Millisecond, stop)
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	p := <-peak
	runtime.KeepAlive(buf)
	if p.anon < 64<<20 || p.file <= 0 || p.hwm < p.anon {
		t.Fatalf("peak RssAnon %d, RssFile %d, VmHWM %d bytes; want ≥ 64 MiB, > 0 and ≥ RssAnon", p.anon, p.file, p.hwm)
	}
	if _, _, _, ok := readRSS(-1); ok {
		t.Fatal("readRSS of no process succeeded")
	}
}
