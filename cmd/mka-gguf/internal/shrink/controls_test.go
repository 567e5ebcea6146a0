package shrink

import (
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/merge"
)

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"123": 123, "40MiB": 40 << 20, "40M": 40 << 20, "1.5G": 3 << 29, "2KB": 2000, " 7 kib ": 7 << 10, "1GB": 1e9} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "-1M", "12XB", "M", "1e400G"} {
		if got, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, got)
		}
	}
}

func TestParseBlocks(t *testing.T) {
	if got, err := ParseBlocks("3, 5,6"); err != nil || !slices.Equal(got, []int{3, 5, 6}) {
		t.Errorf("ParseBlocks = %v, %v", got, err)
	}
	for _, s := range []string{"", "3,3", "-1", "a", "1,,2"} {
		if _, err := ParseBlocks(s); err == nil {
			t.Errorf("ParseBlocks(%q) gave no error", s)
		}
	}
}

// TestBlocksPlanOriginal: --blocks drops exactly the given original
// blocks, the steps' original blocks say so, and so does the closing line.
func TestBlocksPlanOriginal(t *testing.T) {
	p, err := blocksPlan([]int{5, 3, 6}, 8)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := OriginalBlocks(8, p.Steps)
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for _, o := range orig {
		all = append(all, o...)
	}
	slices.Sort(all)
	if !slices.Equal(all, []int{3, 5, 6}) || !slices.Equal(removedBlocks(p), []int{3, 5, 6}) || len(p.Layout) != 5 {
		t.Errorf("original blocks %v, removed %v, %d left; want 3, 5, 6 of 8", orig, removedBlocks(p), len(p.Layout))
	}
	if got := Removed(p); got != "removed original blocks 3, 5, 6" {
		t.Errorf("Removed = %q", got)
	}
}

// TestOriginalBlocksAfterShifts: current indices after earlier steps map
// back to the original blocks, through drops and fusions.
func TestOriginalBlocksAfterShifts(t *testing.T) {
	steps := []merge.Step{
		{Kind: merge.StepDrop, Blocks: [2]int{1, 1}},              // original 1
		{Kind: merge.StepFuse, Blocks: [2]int{1, 2}, Lambda: 0.5}, // originals 2 and 3
		{Kind: merge.StepDrop, Blocks: [2]int{2, 2}},              // original 4
	}
	got, err := OriginalBlocks(6, steps)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int{{1}, {2, 3}, {4}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("OriginalBlocks = %v, want %v", got, want)
		}
	}
	if _, err := OriginalBlocks(3, []merge.Step{{Kind: merge.StepFuse, Blocks: [2]int{2, 3}}}); err == nil {
		t.Error("a fusion of the last block gave no error")
	}
}
