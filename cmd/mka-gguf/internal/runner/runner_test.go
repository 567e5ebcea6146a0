package runner

import (
	"runtime"
	"sync"
	"testing"
)

// TestOneProc checks that overlapping oneProc holds keep GOMAXPROCS at 1
// until the last is released and then restore the setting from before.
func TestOneProc(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			release := oneProc()
			if n := runtime.GOMAXPROCS(0); n != 1 {
				t.Errorf("GOMAXPROCS %d inside oneProc", n)
			}
			release()
		}()
	}
	close(start)
	wg.Wait()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("GOMAXPROCS %d after every release, want 3", n)
	}
	r1 := oneProc()
	r2 := oneProc()
	r1()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d with one hold left", n)
	}
	r2()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Fatalf("GOMAXPROCS %d after nested release", n)
	}
}
