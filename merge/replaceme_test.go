package merge

import (
	"errors"
	"testing"
)

// The cut is the run of n blocks whose input and output point the same
// way at the last token; block 0 is never cut even when it is the most
// similar, and the run may end at the last block.
func TestReplaceMeCut(t *testing.T) {
	// 5 blocks, representations 0..5, two sequences, d = 2.
	dir := func(x, y float32) []float32 { return []float32{x, y, x, y} }
	last := [][]float32{
		dir(1, 0),  // input of block 0
		dir(1, 0),  // out 0: block 0 changes nothing (never cut)
		dir(0, 1),  // out 1
		dir(-1, 0), // out 2
		dir(-1, 1), // out 3
		dir(-1, 1), // out 4: block 4 changes nothing
	}
	start, dist, err := ReplaceMeCut(last, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if start != 4 || len(dist) != 4 || dist[3] != 0 || dist[0] != 0.5 {
		t.Fatalf("n=1: start %d, distances %v; want start 4 (block 4), dist[0] = 0.5", start, dist)
	}
	// n = 2: out0→out2 is 1 (opposite), out1→out3 and out2→out4 0.25
	// (45°): the first of the ties, blocks 2 and 3.
	start, dist, err = ReplaceMeCut(last, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }
	if start != 2 || !near(dist[0], 1) || !near(dist[1], 0.25) || !near(dist[2], 0.25) {
		t.Fatalf("n=2: start %d, distances %v; want start 2 (the first of the ties)", start, dist)
	}
	if _, _, err := ReplaceMeCut(last, 2, 5); !errors.Is(err, ErrCount) {
		t.Fatalf("n=5 of 5: %v", err)
	}
}
