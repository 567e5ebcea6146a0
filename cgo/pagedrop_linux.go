package cgo

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// llama.cpp's quantizer (this version) maps its input file whole and
// never unmaps a tensor it has finished (newer llama.cpp unmaps each), so
// every page of IN stays resident in the process (RssFile) until the end:
// a 1 GiB model costs 1 GiB of RSS on top of the quantizer's buffers.
// While QuantizeFile runs, llama.cpp's log lines (the quantizer logs a few
// per tensor) drop this process's resident pages of IN's shared read-only
// mappings (MADV_DONTNEED). That is safe at any moment: a dropped page of
// a shared file mapping is read again from the page cache on the next
// access, with the same bytes; and while the quantizer's thread waits in
// its log call it cannot unmap IN. The line that names a tensor
// ("[  3/ 84] blk.0.attn_k.weight - ...") is skipped: the quantizer has
// just read that tensor (to validate it) and is about to convert it, so
// dropping it then would only make it fault in twice; its pages go at the
// next line ("converting to q8_0 .. " or "size = ...").

// fileID names a file as /proc/self/maps does: device and inode.
type fileID struct {
	major, minor uint32
	ino          uint64
}

// dropping holds the files whose mapped pages log lines drop, with how
// many QuantizeFile calls asked for each.
var dropping struct {
	sync.Mutex
	n   atomic.Int32 // len(ids), read without the lock on every log line
	ids map[fileID]int
}

// identify returns path's device and inode.
func identify(path string) (fileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("%s: no device and inode", path)
	}
	dev := uint64(sys.Dev)
	// Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
	major := uint32((dev>>8)&0xfff | (dev>>32)&^0xfff)
	minor := uint32(dev&0xff | (dev>>12)&^0xff)
	return fileID{major, minor, sys.Ino}, nil
}

// dropMappedPages makes llama.cpp log lines drop the mapped pages of path
// until the returned function is called. A file it cannot identify is
// left alone (the pages then stay, as without it).
func dropMappedPages(path string) (stop func()) {
	id, err := identify(path)
	if err != nil {
		return func() {}
	}
	dropping.Lock()
	defer dropping.Unlock()
	if dropping.ids == nil {
		dropping.ids = map[fileID]int{}
	}
	dropping.ids[id]++
	dropping.n.Store(int32(len(dropping.ids)))
	return func() {
		dropping.Lock()
		defer dropping.Unlock()
		if dropping.ids[id]--; dropping.ids[id] == 0 {
			delete(dropping.ids, id)
		}
		dropping.n.Store(int32(len(dropping.ids)))
	}
}

// dropRegisteredPages drops the resident pages of every shared read-only
// mapping of the files dropMappedPages registered; called with each
// llama.cpp log line, and skipped for a line that names a tensor.
func dropRegisteredPages(line string) {
	if dropping.n.Load() == 0 || strings.HasPrefix(line, "[") {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	dropping.Lock()
	defer dropping.Unlock()
	for _, r := range sharedMappings(string(maps), dropping.ids) {
		// The range comes from the kernel's own list of this process's
		// mappings, so it is page-aligned and mapped.
		syscall.Syscall(syscall.SYS_MADVISE, r[0], r[1]-r[0], syscall.MADV_DONTNEED)
	}
}

// sharedMappings returns the [start, end) address ranges of the
// read-only shared mappings ("r--s") in maps (the text of
// /proc/self/maps) of the files in ids. Private mappings are left out:
// dropping their pages would lose what the process wrote there.
func sharedMappings(maps string, ids map[fileID]int) [][2]uintptr {
	var out [][2]uintptr
	for line := range strings.SplitSeq(maps, "\n") {
		// start-end perms offset major:minor inode [path]
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != "r--s" {
			continue
		}
		major, minor, okDev := hexPair(f[3], ":")
		ino, err := strconv.ParseUint(f[4], 10, 64)
		if !okDev || err != nil || ids[fileID{uint32(major), uint32(minor), ino}] == 0 {
			continue
		}
		start, end, ok := hexPair(f[0], "-")
		if !ok || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out
}

// hexPair parses two hexadecimal numbers joined by sep ("fc:01").
func hexPair(s, sep string) (a, b uint64, ok bool) {
	x, y, found := strings.Cut(s, sep)
	a, errA := strconv.ParseUint(x, 16, 64)
	b, errB := strconv.ParseUint(y, 16, 64)
	return a, b, found && errA == nil && errB == nil
}
