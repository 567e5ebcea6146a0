package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// OutTensor is a tensor to write: its info (Offset is ignored and
// recomputed) and the source of exactly Info.Size() bytes of data.
// A *bytes.Reader, File.OutTensor's copier or a WriterToFunc can serve as Src.
type OutTensor struct {
	Info TensorInfo
	Src  io.WriterTo
}

// WriterToFunc adapts a function to io.WriterTo, for tensor data generated
// on the fly.
type WriterToFunc func(w io.Writer) (int64, error)

// WriteTo calls fn(w).
func (fn WriterToFunc) WriteTo(w io.Writer) (int64, error) { return fn(w) }

// copyBufSize is the buffer used to copy tensor data from readers.
const copyBufSize = 1 << 20

// Write writes a GGUF file to w, which must be at the start of the file:
// the header with the given version (2 or 3), kvs in the given order, the
// tensor infos in the given order, zero padding to the alignment, then each
// tensor's data in turn, each padded with zeros to the alignment, as ggml's
// gguf writer does. Each tensor's offset is assigned from the sizes before
// it and is aligned relative to the data section.
//
// alignment must match general.alignment in kvs (32 when absent); 0 means
// "take it from kvs". Write validates everything Open would (value types,
// unique keys and names, shapes, types) before writing anything, streams
// each tensor through a fixed buffer (memory does not grow with the data)
// and fails if a source writes more or less than Info.Size() bytes.
func Write(w io.Writer, version uint32, kvs []KV, alignment uint32, tensors []OutTensor) error {
	align, err := checkOut(version, kvs, alignment, tensors)
	if err != nil {
		return err
	}
	e := &encoder{w: bufio.NewWriterSize(w, 64<<10)}

	e.bytes([]byte(magic))
	e.u32(version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	var off uint64
	for _, t := range tensors {
		e.str(t.Info.Name)
		e.u32(uint32(len(t.Info.Dims)))
		for _, d := range t.Info.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Info.Type))
		e.u64(off)
		size := t.Info.Size()
		off += size + uint64(pad(int64(size), int64(align)))
	}
	e.pad(align)
	if e.err != nil {
		return fmt.Errorf("gguf: write header: %w", e.err)
	}

	tw := &tensorWriter{e: e, buf: make([]byte, copyBufSize)}
	for i, t := range tensors {
		size := int64(t.Info.Size())
		tw.left = size
		n, err := t.Src.WriteTo(tw)
		if err == nil && e.err != nil {
			err = e.err
		}
		if err == nil && tw.left != 0 {
			err = fmt.Errorf("source wrote %d bytes, want %d", size-tw.left, size)
		}
		if err == nil && n != size {
			err = fmt.Errorf("source reported %d bytes written, want %d", n, size)
		}
		if err != nil {
			return fmt.Errorf("gguf: write tensor %d %q: %w", i, t.Info.Name, err)
		}
		e.pad(align)
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("gguf: write: %w", err)
	}
	return nil
}

// checkOut validates Write's arguments and returns the alignment.
func checkOut(version uint32, kvs []KV, alignment uint32, tensors []OutTensor) (uint32, error) {
	if version != 2 && version != 3 {
		return 0, fmt.Errorf("gguf: write version %d, want 2 or 3", version)
	}
	align := uint32(defaultAlignment)
	keys := make(map[string]struct{}, len(kvs))
	for i, kv := range kvs {
		if _, dup := keys[kv.Key]; dup {
			return 0, fmt.Errorf("gguf: kv %d %q: duplicate key", i, kv.Key)
		}
		keys[kv.Key] = struct{}{}
		if err := kv.Value.check(); err != nil {
			return 0, fmt.Errorf("gguf: kv %d %q: %w", i, kv.Key, err)
		}
		if kv.Key == alignmentKey {
			a, ok := kv.Value.V.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return 0, fmt.Errorf("gguf: kv %d %q: want a uint32 power of two, have %s %v", i, kv.Key, kv.Value.Type, kv.Value.V)
			}
			align = a
		}
	}
	if alignment != 0 && alignment != align {
		return 0, fmt.Errorf("gguf: write alignment %d, but %s is %d", alignment, alignmentKey, align)
	}
	names := make(map[string]struct{}, len(tensors))
	var total uint64
	for i, t := range tensors {
		if _, dup := names[t.Info.Name]; dup {
			return 0, fmt.Errorf("gguf: tensor %d %q: duplicate name", i, t.Info.Name)
		}
		names[t.Info.Name] = struct{}{}
		size, kind, detail := t.Info.check()
		if kind != nil {
			return 0, fmt.Errorf("%w: tensor %d %q: %s", kind, i, t.Info.Name, detail)
		}
		if t.Src == nil {
			return 0, fmt.Errorf("gguf: tensor %d %q: nil source", i, t.Info.Name)
		}
		total += size + uint64(pad(int64(size), int64(align)))
		if total > math.MaxInt64/2 {
			return 0, fmt.Errorf("gguf: tensor %d %q: data section too large", i, t.Info.Name)
		}
	}
	return align, nil
}

// encoder writes little-endian fields, keeping the first error and the
// number of bytes written.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) bytes(p []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(p)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u8(v uint8) { e.buf[0] = v; e.bytes(e.buf[:1]) }

func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.bytes(e.buf[:2])
}

func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.bytes(e.buf[:4])
}

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.bytes(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		n, err := e.w.WriteString(s)
		e.n += int64(n)
		e.err = err
	}
}

var zeros [4096]byte

// pad writes zeros up to the next multiple of align.
func (e *encoder) pad(align uint32) {
	for p := pad(e.n, int64(align)); p > 0 && e.err == nil; {
		k := min(p, int64(len(zeros)))
		e.bytes(zeros[:k])
		p -= k
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value writes v's payload (not its type); v has passed check.
func (e *encoder) value(v Value) {
	switch x := v.V.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.u8(b2u(x))
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case Array:
		e.array(x)
	}
}

func (e *encoder) array(a Array) {
	e.u32(uint32(a.Elem))
	e.u64(uint64(a.Len()))
	switch s := a.Values.(type) {
	case []uint8:
		e.bytes(s)
	case []int8:
		for _, x := range s {
			e.u8(uint8(x))
		}
	case []uint16:
		for _, x := range s {
			e.u16(x)
		}
	case []int16:
		for _, x := range s {
			e.u16(uint16(x))
		}
	case []uint32:
		for _, x := range s {
			e.u32(x)
		}
	case []int32:
		for _, x := range s {
			e.u32(uint32(x))
		}
	case []float32:
		for _, x := range s {
			e.u32(math.Float32bits(x))
		}
	case []bool:
		for _, x := range s {
			e.u8(b2u(x))
		}
	case []string:
		for _, x := range s {
			e.str(x)
		}
	case []uint64:
		for _, x := range s {
			e.u64(x)
		}
	case []int64:
		for _, x := range s {
			e.u64(uint64(x))
		}
	case []float64:
		for _, x := range s {
			e.u64(math.Float64bits(x))
		}
	case []Array:
		for _, x := range s {
			e.array(x)
		}
	}
}

// errTooLong is returned to a source that writes past its tensor's size.
var errTooLong = errors.New("source wrote more than the tensor size")

// tensorWriter receives one tensor's data, refusing bytes past its size.
// Its ReadFrom copies through one buffer shared by all tensors, so copying
// from a reader allocates nothing.
type tensorWriter struct {
	e    *encoder
	left int64
	buf  []byte
}

func (w *tensorWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errTooLong
	}
	w.e.bytes(p)
	if w.e.err != nil {
		return 0, w.e.err
	}
	w.left -= int64(len(p))
	return len(p), nil
}

func (w *tensorWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		k := min(int64(len(w.buf)), w.left)
		if k == 0 {
			k = 1 // probe for extra bytes
		}
		n, err := r.Read(w.buf[:k])
		if n > 0 {
			if _, werr := w.Write(w.buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// WriteFile writes a GGUF file to path atomically (see Write and
// CreateAtomic): on any error no file is left at path and a file already
// there is untouched.
func WriteFile(path string, version uint32, kvs []KV, alignment uint32, tensors []OutTensor) error {
	a, err := CreateAtomic(path)
	if err != nil {
		return err
	}
	defer a.Abort()
	if err := Write(a, version, kvs, alignment, tensors); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return a.Commit()
}

// AtomicFile is a file written in a temporary place beside its target and
// renamed over the target on Commit, so the target never holds a partial
// file. Write through the embedded *os.File, but do not Close it: call
// Commit to keep the file or Abort to drop it. Callers must
//
//	defer a.Abort()
//
// right after CreateAtomic, so that every error path removes the temporary
// file; Abort after Commit does nothing.
type AtomicFile struct {
	*os.File
	target string
	done   bool
}

// CreateAtomic creates a temporary file ".<name>.tmp-*" in path's folder,
// to become path on Commit. The file gets the permissions of an existing
// file at path, or 0644.
func CreateAtomic(path string) (*AtomicFile, error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, err
	}
	perm := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		perm = st.Mode().Perm()
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &AtomicFile{File: f, target: path}, nil
}

// Commit flushes the file to disk, closes it and renames it to the target
// path. On failure the temporary file is removed. Commit after Commit or
// Abort fails.
func (a *AtomicFile) Commit() error {
	if a.done {
		return fmt.Errorf("%s: gguf: atomic file already committed or aborted", a.target)
	}
	a.done = true
	err := a.File.Sync()
	if cerr := a.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.File.Name(), a.target)
	}
	if err != nil {
		os.Remove(a.File.Name())
		return err
	}
	syncDir(filepath.Dir(a.target))
	return nil
}

// Abort closes and removes the temporary file unless Commit or Abort already
// ran. It is safe to defer and to call more than once.
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
}

// syncDir makes a rename durable where the platform allows syncing a folder;
// failures are ignored, as the rename itself has succeeded.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
