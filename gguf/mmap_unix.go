//go:build unix

package gguf

import (
	"math"
	"os"
	"syscall"
)

// mmap maps the whole file read-only; nil without error means "read instead"
// (a file too large for this platform's address space).
func mmap(f *os.File, size int64) ([]byte, error) {
	if size > math.MaxInt {
		return nil, nil
	}
	return syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
}

func unmap(b []byte) error { return syscall.Munmap(b) }
