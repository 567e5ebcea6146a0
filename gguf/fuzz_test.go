package gguf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Open. It must never panic; a file it
// accepts must write back, and the written file must read back to the same
// structure and write back to the same bytes.
func FuzzRead(f *testing.F) {
	f.Add(sampleFile(f))
	f.Add(encode(f, 2, sampleKVs, outTensors(sampleInfos)))
	f.Add(encode(f, 3, nil, nil))
	f.Add(encode(f, 3, allKVs(64), outTensors(allTypes()[:6])))
	f.Add(deepNest(maxDepth))
	for _, c := range badCases(f) {
		f.Add(c.data)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.gguf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		a, err := Open(path)
		if err != nil {
			if msg := err.Error(); bytes.ContainsAny([]byte(msg), "\r\n") || !bytes.HasPrefix([]byte(msg), []byte(path)) {
				t.Fatalf("bad error message %q", msg)
			}
			return
		}
		defer a.Close()
		var out bytes.Buffer
		if err := a.Edit().Write(&out); err != nil {
			t.Fatalf("rewrite of an accepted file failed: %v", err)
		}
		b, err := decodeBytes("rewritten", out.Bytes())
		if err != nil {
			t.Fatalf("rewritten file does not open: %v", err)
		}
		if err := sameStructure(a, b); err != nil {
			t.Fatalf("rewritten file differs: %v", err)
		}
		var again bytes.Buffer
		if err := b.Edit().Write(&again); err != nil || !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("second rewrite differs (%v)", err)
		}
	})
}
