package compare

import (
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
)

// TestVariants checks the rows compare makes from --methods and --align
// and their names in file names.
func TestVariants(t *testing.T) {
	aligns, err := ParseAligns("none,ls")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Methods: []shrink.Method{shrink.PruneReverse, shrink.MKA}, Aligns: aligns}
	var names, labels []string
	for _, v := range o.Variants() {
		names, labels = append(names, v.Name), append(labels, v.Label)
	}
	if want := []string{"prune-reverse", "prune-reverse-ls", "mka", "mka-ls"}; !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	if labels[1] != "prune-reverse --align ls" {
		t.Errorf("label %q", labels[1])
	}
	if _, err := ParseAligns("ls,both"); err == nil {
		t.Error("--align ls,both: want an error")
	}
	if n, err := ParseCounts("1, 3"); err != nil || !slices.Equal(n, []int{1, 3}) {
		t.Errorf("ParseCounts = %v, %v", n, err)
	}
	for _, s := range []string{"0", "1,x", ""} {
		if _, err := ParseCounts(s); err == nil {
			t.Errorf("ParseCounts(%q): want an error", s)
		}
	}
}
