package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// TempBeside returns the hidden temporary path ".<name>.<tag>" in out's
// folder, where an output is built before it is renamed into place (a
// rename within one folder is atomic).
func TempBeside(out, tag string) string {
	dir, name := filepath.Split(out)
	return filepath.Join(dir, "."+name+"."+tag)
}

// Build builds out through a temporary file beside it: produce writes the
// file, check (when not nil) must accept it, and only then is it renamed to
// out. The temporary file is removed on any error and on cancellation
// (Ctrl-C).
func Build(ctx context.Context, out string, produce, check func(tmp string) error) error {
	tmp := TempBeside(out, "mka-tmp")
	defer os.Remove(tmp)
	if err := produce(tmp); err != nil {
		return err
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// WriteAtomic writes data to path through a temporary file in its folder
// (gguf.CreateAtomic): path holds the old contents or the new, never a
// part.
func WriteAtomic(path string, data []byte) error {
	af, err := gguf.CreateAtomic(path)
	if err != nil {
		return err
	}
	defer af.Abort()
	if _, err := af.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return af.Commit()
}

// WriteJSON writes v as indented JSON to the temporary file of f (nil:
// nothing asked for).
func WriteJSON(f *File, v any) error {
	if f == nil {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(f.Tmp, append(b, '\n'), 0o644)
}

// SHA256 returns the hex SHA-256 of a file.
func SHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckSpace reports when the folder of out has less free space than need
// (and 2 % more).
func CheckSpace(out string, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(out), &st); err != nil {
		return nil // unknown: let the write report it
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need+need/50 {
		return fmt.Errorf("%s: not enough disk space: need %s, %s free in %s", out, Human(uint64(need)), Human(uint64(free)), filepath.Dir(out))
	}
	return nil
}

// Human formats a byte count for people: "1.13 MiB".
func Human(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
