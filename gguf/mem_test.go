package gguf

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// bigFile writes a file of n tensors of 4 MiB each (F32 [1024, 1024]) whose
// data is generated, not held in memory.
func bigFile(tb testing.TB, dir string, n int) string {
	tb.Helper()
	block := randBytes(7, 64<<10)
	var ts []OutTensor
	for i := range n {
		info := TensorInfo{Name: "blk." + string(rune('a'+i%26)) + string(rune('a'+i/26)), Dims: []uint64{1024, 1024}, Type: TypeF32}
		ts = append(ts, OutTensor{Info: info, Src: WriterToFunc(func(w io.Writer) (int64, error) {
			var total int64
			for k := 0; k < 4<<20; k += len(block) {
				block[0] = byte(i) // differ per tensor
				m, err := w.Write(block)
				total += int64(m)
				if err != nil {
					return total, err
				}
			}
			return total, nil
		})})
	}
	path := filepath.Join(dir, "big.gguf")
	if err := WriteFile(path, 3, sampleKVs, 0, ts); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestRewriteMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 128 MiB")
	}
	dir := t.TempDir()
	path := bigFile(t, dir, 16) // 64 MiB
	f := mustOpen(t, path)
	out := filepath.Join(dir, "out.gguf")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := f.Edit().WriteFile(out); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)

	const limit = 8 << 20
	total := after.TotalAlloc - before.TotalAlloc
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("file %d MiB: allocated %d KiB, heap grew %d KiB", f.Size>>20, total>>10, heap>>10)
	if total > limit || heap > limit {
		t.Fatalf("rewrite allocated %d bytes (heap +%d), want under %d", total, heap, limit)
	}
	if hashFile(t, path) != hashFile(t, out) {
		t.Fatal("rewrite differs")
	}
}

// BenchmarkRewrite compares Edit().WriteFile with a plain io.Copy of the
// same file (to a new file, with fsync, as WriteFile does), in one run.
func BenchmarkRewrite(b *testing.B) {
	dir := b.TempDir()
	path := bigFile(b, dir, 16)
	f := mustOpen(b, path)
	out := filepath.Join(dir, "out.gguf")
	var tEdit, tCopy time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := f.Edit().WriteFile(out); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := plainCopy(path, out+".copy"); err != nil {
			b.Fatal(err)
		}
		tEdit += t1.Sub(t0)
		tCopy += time.Since(t1)
	}
	mb := float64(f.Size) * float64(b.N) / 1e6
	b.ReportMetric(mb/tEdit.Seconds(), "edit-MB/s")
	b.ReportMetric(mb/tCopy.Seconds(), "copy-MB/s")
	b.ReportMetric(tCopy.Seconds()/tEdit.Seconds(), "edit/copy-speed")
}

func plainCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
