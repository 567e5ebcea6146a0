package bench

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// watchRSS on this process sees 64 MiB of touched heap as anonymous memory.
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
	if p.anon < 64<<20 || p.file <= 0 {
		t.Fatalf("peak RssAnon %d, RssFile %d bytes; want ≥ 64 MiB and > 0", p.anon, p.file)
	}
	if _, _, ok := readRSS(-1); ok {
		t.Fatal("readRSS of no process succeeded")
	}
}
