package gguf

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
	"sync"
)

// maxDims is ggml's GGML_MAX_DIMS.
const maxDims = 4

// TensorInfo describes one tensor: its name, shape, type and where its data
// starts.
type TensorInfo struct {
	Name string
	// Dims is the shape, ne0 first (the row length), as GGUF stores it.
	Dims []uint64
	Type Type
	// Offset is where the data starts, relative to the data section
	// (File.DataOffset). Write ignores it and assigns offsets itself.
	Offset uint64
}

// Elements returns the number of elements, the product of Dims, or 0 when
// the info is invalid (see Size).
func (t TensorInfo) Elements() uint64 {
	if _, kind, _ := t.check(); kind != nil {
		return 0
	}
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Size returns the bytes of the tensor's data:
//
//	RowSize(Dims[0]) * Dims[1] * Dims[2] * Dims[3]
//
// It returns 0 for an info Open or Write would refuse (unknown type, dims
// outside 1..4 or zero, ne0 not a multiple of the block size, overflow).
func (t TensorInfo) Size() uint64 {
	n, kind, _ := t.check()
	if kind != nil {
		return 0
	}
	return n
}

// check validates the shape and type and returns the data size, or the
// sentinel and a detail message.
func (t TensorInfo) check() (size uint64, kind error, detail string) {
	if len(t.Dims) < 1 || len(t.Dims) > maxDims {
		return 0, ErrCorrupt, fmt.Sprintf("%d dims, want 1 to %d", len(t.Dims), maxDims)
	}
	if !t.Type.Known() {
		return 0, ErrUnknownType, fmt.Sprintf("tensor type %d", uint32(t.Type))
	}
	elems := uint64(1)
	for _, d := range t.Dims {
		if d == 0 {
			return 0, ErrCorrupt, fmt.Sprintf("dims %v hold a zero", t.Dims)
		}
		hi, lo := bits.Mul64(elems, d)
		if hi != 0 || lo > 1<<63-1 {
			return 0, ErrCorrupt, fmt.Sprintf("dims %v overflow", t.Dims)
		}
		elems = lo
	}
	row, err := t.Type.RowSize(t.Dims[0])
	if err != nil {
		return 0, ErrCorrupt, fmt.Sprintf("dims %v: row of %d elements is not a multiple of the %s block size %d", t.Dims, t.Dims[0], t.Type, t.Type.BlockSize())
	}
	size = row
	for _, d := range t.Dims[1:] {
		hi, lo := bits.Mul64(size, d)
		if hi != 0 || lo > 1<<63-1 {
			return 0, ErrCorrupt, fmt.Sprintf("dims %v: %s size overflows", t.Dims, t.Type)
		}
		size = lo
	}
	return size, nil, ""
}

// File is an open GGUF file: its parsed header, metadata and tensor infos,
// and the open file for reading tensor data. Treat the exported fields as
// read-only (use Edit to change things). A File is safe for concurrent use.
type File struct {
	// Path is the path given to Open.
	Path string
	// Version is the GGUF version, 2 or 3.
	Version uint32
	// KVs holds the metadata in file order.
	KVs []KV
	// Tensors holds the tensor infos in file order.
	Tensors []TensorInfo
	// Alignment is general.alignment, or 32 when absent.
	Alignment uint32
	// DataOffset is the absolute offset of the data section: the end of the
	// tensor infos padded to Alignment.
	DataOffset int64
	// Size is the file size in bytes.
	Size int64

	ra  io.ReaderAt // the data, normally osf
	osf *os.File    // nil for a File decoded from memory

	mu     sync.Mutex
	mapped []byte // whole-file mapping made by TensorBytes
	closed bool
}

// errClosed is returned by TensorBytes after Close.
var errClosed = errors.New("gguf: file already closed")

// Close unmaps any mapping made by TensorBytes and closes the file. Slices
// returned by TensorBytes must not be used after Close. Close is idempotent.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var err error
	if f.mapped != nil {
		err = unmap(f.mapped)
		f.mapped = nil
	}
	if f.osf != nil {
		err = errors.Join(err, f.osf.Close())
	}
	return err
}

// KV returns the metadata pair with the given key.
func (f *File) KV(key string) (KV, bool) {
	for _, kv := range f.KVs {
		if kv.Key == key {
			return kv, true
		}
	}
	return KV{}, false
}

// String returns the value of a string key; false when the key is absent or
// not a string.
func (f *File) String(key string) (string, bool) {
	kv, ok := f.KV(key)
	if !ok || kv.Value.Type != ValueString {
		return "", false
	}
	s, ok := kv.Value.V.(string)
	return s, ok
}

// Uint returns the value of an integer key of any integer type; false when
// the key is absent, not an integer or negative.
func (f *File) Uint(key string) (uint64, bool) {
	kv, ok := f.KV(key)
	if !ok {
		return 0, false
	}
	return kv.Value.uintValue()
}

// Float returns the value of a numeric key (float or integer) as a float64;
// false when the key is absent or not a number.
func (f *File) Float(key string) (float64, bool) {
	kv, ok := f.KV(key)
	if !ok {
		return 0, false
	}
	v, ok := kv.Value.floatValue()
	if !ok {
		return 0, false
	}
	return v, true
}

// Arch returns general.architecture ("llama", "qwen2", ...), or "" when
// absent.
func (f *File) Arch() string {
	s, _ := f.String("general.architecture")
	return s
}

// Tensor returns the index of the tensor with the given name.
func (f *File) Tensor(name string) (int, bool) {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return i, true
		}
	}
	return -1, false
}

// TensorReader returns a reader over the data of tensor i, read from the
// open file on demand (nothing is loaded). Readers are independent and safe
// for concurrent use; they fail once the File is closed. It panics if i is
// out of range.
func (f *File) TensorReader(i int) *io.SectionReader {
	t := &f.Tensors[i]
	return io.NewSectionReader(f.ra, f.DataOffset+int64(t.Offset), int64(t.Size()))
}

// TensorBytes returns the data of tensor i as a read-only slice of a memory
// mapping of the whole file (made on first use, where the platform supports
// mmap; elsewhere, and for files not opened by Open, the data is read into a
// new slice). Writing to the slice crashes the program. The slice is valid
// until Close; using it afterwards crashes the program. It fails after
// Close and panics if i is out of range.
func (f *File) TensorBytes(i int) ([]byte, error) {
	t := &f.Tensors[i]
	off, n := f.DataOffset+int64(t.Offset), int64(t.Size())
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	if f.mapped == nil && f.osf != nil && f.Size > 0 {
		m, err := mmap(f.osf, f.Size)
		if err != nil {
			return nil, fmt.Errorf("%s: mmap: %w", f.Path, err)
		}
		f.mapped = m
	}
	if f.mapped != nil {
		return f.mapped[off : off+n : off+n], nil
	}
	b := make([]byte, n)
	if _, err := f.ra.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, t.Name, err)
	}
	return b, nil
}

// OutTensor returns tensor i as an input to Write: its info and a source
// that copies its bytes from this file. It panics if i is out of range.
func (f *File) OutTensor(i int) OutTensor {
	t := f.Tensors[i]
	t.Dims = slices.Clone(t.Dims)
	return OutTensor{Info: t, Src: sectionSource{f.TensorReader(i)}}
}

// sectionSource copies a section of a file. Its WriteTo lets the writer's
// ReadFrom copy with the writer's own buffer.
type sectionSource struct{ r *io.SectionReader }

func (s sectionSource) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, s.r) }
