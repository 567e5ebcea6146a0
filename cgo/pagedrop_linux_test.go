package cgo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func TestSharedMappings(t *testing.T) {
	maps := `55d0c0a00000-55d0c0a21000 r--p 00000000 fc:01 1234 /usr/bin/x
7f0800000000-7f0840000000 r--s 00000000 fc:01 4242 /tmp/in.gguf
7f0840000000-7f0840001000 r--p 00000000 fc:01 4242 /tmp/in.gguf
7f0850000000-7f0850100000 r--s 00000000 fc:01 4243 /tmp/other.gguf
7f0860000000-7f0860100000 r--s 00001000 103:02 4242 /mnt/in.gguf
7f0870000000-7f0870100000 rw-p 00000000 00:00 0
garbage line
7f0880000000-7f0870000000 r--s 00000000 fc:01 4242 /tmp/in.gguf
`
	got := sharedMappings(maps, map[fileID]int{{0xfc, 0x01, 4242}: 1, {0x103, 0x02, 4242}: 1})
	want := [][2]uintptr{{0x7f0800000000, 0x7f0840000000}, {0x7f0860000000, 0x7f0860100000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sharedMappings = %x, want %x (only r--s mappings of the registered device:inode, well formed)", got, want)
	}
	if got := sharedMappings(maps, nil); len(got) != 0 {
		t.Fatalf("no file registered: got %x", got)
	}
}

// mappedRSS returns the resident bytes of the mapping starting at addr,
// from /proc/self/smaps.
func mappedRSS(t *testing.T, addr uintptr) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	start := fmt.Sprintf("%x-", addr)
	in := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = strings.HasPrefix(line, start)
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no mapping at %x in /proc/self/smaps", addr)
	return 0
}

// A registered file's shared mapping loses its resident pages on a log
// line (not on the one naming a tensor), and still reads the same bytes; a
// private mapping of it, and the file after stop, keep theirs.
func TestDropMappedPages(t *testing.T) {
	const size = 8 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 >> 3)
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shared, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(shared)
	private, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(private)
	addr := func(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
	touch := func() {
		if !bytes.Equal(shared, data) || !bytes.Equal(private, data) {
			t.Fatal("a mapping reads other bytes than the file's")
		}
	}
	touch()
	if r := mappedRSS(t, addr(shared)); r < size/2 {
		t.Skipf("the touched mapping has only %d resident bytes", r)
	}
	stop := dropMappedPages(path)
	dropRegisteredPages("[   1/  84]                    token_embd.weight - [  2048,  32000,      1,      1], type =    f16, ")
	if r := mappedRSS(t, addr(shared)); r < size/2 {
		t.Fatalf("a line naming a tensor dropped pages: %d resident bytes left", r)
	}
	dropRegisteredPages("converting to q8_0 .. ")
	if r := mappedRSS(t, addr(shared)); r > size/8 {
		t.Fatalf("shared mapping: %d resident bytes after the drop, want ≤ %d", r, size/8)
	}
	if r := mappedRSS(t, addr(private)); r < size/2 {
		t.Fatalf("private mapping: %d resident bytes after the drop, want it left alone", r)
	}
	touch()
	stop()
	dropRegisteredPages("size =    22.00 MiB ->    11.69 MiB\n")
	if r := mappedRSS(t, addr(shared)); r < size/2 {
		t.Fatalf("after stop: %d resident bytes, want the pages left alone", r)
	}
	if dropping.n.Load() != 0 {
		t.Fatalf("after stop %d files are still registered", dropping.n.Load())
	}
}
