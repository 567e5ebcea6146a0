package files

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRemoveTemps checks that an output's cleanup removes the temporary
// files of the writers nested in its own (what a second signal leaves) and
// nothing else.
func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	f := &File{Path: filepath.Join(dir, "out.gguf")}
	f.Tmp = TempBeside(f.Path, TmpTag)
	temps := []string{filepath.Base(f.Tmp), "..out.gguf.mka-out.mka-tmp", "...out.gguf.mka-out.mka-tmp.tmp-123", "..out.gguf.mka-out.mka-fused"}
	keep := []string{"out.gguf", ".other.gguf.mka-out", "out.gguf.mka-out", ".out.gguf.tmp-1", "x-out.gguf", ".x-out.gguf.mka-out"}
	for _, n := range append(slices.Clone(temps), keep...) {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	RemoveTemps(f)
	got := names(t, dir)
	slices.Sort(got)
	want := slices.Clone(keep)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after RemoveTemps: %q, want %q", got, want)
	}
}

// names returns the names of the files in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
