//go:build !unix

package gguf

import (
	"errors"
	"os"
)

func mmap(*os.File, int64) ([]byte, error) { return nil, nil }

func unmap([]byte) error { return errors.New("gguf: no mmap on this platform") }
