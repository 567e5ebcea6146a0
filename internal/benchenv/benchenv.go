// Package benchenv holds what the project's large benchmarks share: cases
// run in child processes (RunChild), the process's peak memory, a baseline
// file copy, and the free disk space that decides whether a 1 GB benchmark
// can run.
package benchenv

import (
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ProcStatusKB returns a "kB" field of /proc/self/status (e.g. VmHWM, the
// peak resident set, or VmRSS), or -1 where there is none.
func ProcStatusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// CopyFile copies in to out with io.Copy (the baseline a rewrite or a
// quantization is compared with), and syncs out when sync is true.
func CopyFile(in, out string, sync bool) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if sync {
		if err := dst.Sync(); err != nil {
			dst.Close()
			return err
		}
	}
	return dst.Close()
}

// FreeBytes returns the free space of the file system holding dir, or -1.
func FreeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
