package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
)

// Limits beyond which a count or length is corrupt rather than truncated:
// no real file comes near them.
const (
	maxCount = 1 << 24 // tensors or keys in one file
	maxLen   = 1 << 32 // bytes in a string, elements in an array
)

// Minimum wire sizes, used to bound counts by the bytes left in the file.
const (
	minKVSize         = 8 + 4 + 1         // empty key, type, one byte
	minTensorInfoSize = 8 + 4 + 8 + 4 + 8 // empty name, ndims, one dim, type, offset
)

// defaultAlignment is the data alignment when general.alignment is absent.
const defaultAlignment = 32

// alignmentKey is the metadata key holding the data alignment (uint32).
const alignmentKey = "general.alignment"

// magic is the first four bytes of every GGUF file.
const magic = "GGUF"

// Open opens and parses the GGUF file at path. Only the header, metadata and
// tensor infos are read; tensor data stays in the file until read through
// TensorReader or TensorBytes. The caller must Close the File.
//
// Open checks every structural rule (see the package documentation) and
// never panics on bad input. A file that cannot be opened gives an
// *os.PathError. A file that is not valid GGUF gives an error that reads
// "<path>: gguf: <kind>: <where>: <detail>" on one line and wraps one of the
// package's sentinel errors; a failed read wraps the I/O error instead.
func Open(path string) (*File, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, err
	}
	if st.IsDir() {
		osf.Close()
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("is a directory")}
	}
	f, err := decode(osf, st.Size(), path)
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.osf = osf
	return f, nil
}

// decode parses the header, metadata and tensor infos of the size bytes in
// ra and checks the tensor layout.
func decode(ra io.ReaderAt, size int64, path string) (*File, error) {
	d := &decoder{
		r:    bufio.NewReaderSize(io.NewSectionReader(ra, 0, size), 64<<10),
		size: size,
		sect: "header",
		elem: -1,
	}
	f := &File{Path: path, Size: size, Alignment: defaultAlignment, ra: ra}
	if err := d.header(f); err != nil {
		return nil, err
	}
	if err := d.layout(f); err != nil {
		return nil, err
	}
	return f, nil
}

// decoder reads GGUF fields from r, tracking the position and the place
// being read so that errors can say where they happened.
type decoder struct {
	r    *bufio.Reader
	pos  int64 // bytes consumed
	size int64 // file size
	buf  [8]byte

	// Where we are, for error messages: sect, item idx of cnt (when cnt > 0),
	// item name (when set), field, array element (when elem >= 0).
	sect     string
	idx, cnt uint64
	name     string
	field    string
	elem     int64
}

func (d *decoder) where() string {
	s := d.sect
	if d.cnt > 0 {
		s += fmt.Sprintf(" %d of %d", d.idx, d.cnt)
	}
	if d.name != "" {
		s += " " + quote(d.name)
	}
	if d.field != "" {
		s += " (" + d.field
		if d.elem >= 0 {
			s += fmt.Sprintf(", element %d", d.elem)
		}
		s += ")"
	}
	return s
}

// errf returns an error wrapping kind, with the current place and detail.
func (d *decoder) errf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", kind, d.where(), fmt.Sprintf(format, args...))
}

func (d *decoder) left() int64 { return d.size - d.pos }

// full reads exactly len(p) bytes.
func (d *decoder) full(p []byte) error {
	n, err := io.ReadFull(d.r, p)
	d.pos += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return d.errf(ErrTruncated, "%v", io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("gguf: %s: %w", d.where(), err)
	}
	return nil
}

func (d *decoder) u8() (uint8, error) {
	err := d.full(d.buf[:1])
	return d.buf[0], err
}

func (d *decoder) u16() (uint16, error) {
	err := d.full(d.buf[:2])
	return binary.LittleEndian.Uint16(d.buf[:]), err
}

func (d *decoder) u32() (uint32, error) {
	err := d.full(d.buf[:4])
	return binary.LittleEndian.Uint32(d.buf[:]), err
}

func (d *decoder) u64() (uint64, error) {
	err := d.full(d.buf[:8])
	return binary.LittleEndian.Uint64(d.buf[:]), err
}

// str reads a length-prefixed string, checking the length before
// allocating.
func (d *decoder) str() (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > maxLen {
		return "", d.errf(ErrCorrupt, "string length %d exceeds %d", n, uint64(maxLen))
	}
	if n > uint64(d.left()) {
		return "", d.errf(ErrTruncated, "string of %d bytes runs past the end of the file (%d bytes left)", n, d.left())
	}
	if n <= uint64(d.r.Size()) {
		p, err := d.r.Peek(int(n))
		if err == nil {
			s := string(p)
			d.r.Discard(int(n))
			d.pos += int64(n)
			return s, nil
		}
	}
	p := make([]byte, n)
	if err := d.full(p); err != nil {
		return "", err
	}
	return string(p), nil
}

// header reads everything up to the data section into f.
func (d *decoder) header(f *File) error {
	d.field = "magic"
	var m [4]byte
	n, err := io.ReadFull(d.r, m[:])
	d.pos += int64(n)
	if string(m[:n]) != magic[:n] {
		return d.errf(ErrBadMagic, "file starts with %q, want %q", m[:n], magic)
	}
	if err != nil {
		if n == 0 {
			return d.errf(ErrTruncated, "empty file")
		}
		return d.errf(ErrTruncated, "%v", io.ErrUnexpectedEOF)
	}

	d.field = "version"
	if f.Version, err = d.u32(); err != nil {
		return err
	}
	if v := f.Version; v != 2 && v != 3 {
		if be := bits.ReverseBytes32(v); be >= 1 && be <= 3 {
			return d.errf(ErrUnsupportedVersion, "big-endian GGUF (version %d) is not supported", bits.ReverseBytes32(v))
		}
		return d.errf(ErrUnsupportedVersion, "version %d, want 2 or 3", v)
	}

	d.field = "tensor count"
	nt, err := d.u64()
	if err != nil {
		return err
	}
	if nt > maxCount {
		return d.errf(ErrCorrupt, "%d tensors exceeds %d", nt, maxCount)
	}
	d.field = "kv count"
	nkv, err := d.u64()
	if err != nil {
		return err
	}
	if nkv > maxCount {
		return d.errf(ErrCorrupt, "%d keys exceeds %d", nkv, maxCount)
	}
	if need := nt*minTensorInfoSize + nkv*minKVSize; need > uint64(d.left()) {
		return d.errf(ErrTruncated, "%d keys and %d tensor infos need at least %d bytes, %d left", nkv, nt, need, d.left())
	}

	if err := d.kvs(f, nkv); err != nil {
		return err
	}
	return d.tensorInfos(f, nt)
}

func (d *decoder) kvs(f *File, n uint64) error {
	f.KVs = make([]KV, 0, n)
	seen := make(map[string]struct{}, n)
	d.sect, d.cnt, d.elem = "kv", n, -1
	for i := uint64(0); i < n; i++ {
		d.idx, d.name, d.field = i, "", "key"
		key, err := d.str()
		if err != nil {
			return err
		}
		d.name = key
		if _, dup := seen[key]; dup {
			return d.errf(ErrCorrupt, "duplicate key")
		}
		seen[key] = struct{}{}
		d.field = "type"
		t, err := d.u32()
		if err != nil {
			return err
		}
		d.field = "value"
		v, err := d.value(ValueType(t), 0)
		if err != nil {
			return err
		}
		f.KVs = append(f.KVs, KV{Key: key, Value: v})
	}

	d.sect, d.cnt, d.name, d.field = "kv", 0, alignmentKey, ""
	if kv, ok := f.KV(alignmentKey); ok {
		a, ok := kv.Value.V.(uint32)
		if kv.Value.Type != ValueUint32 || !ok {
			return d.errf(ErrCorrupt, "type %s, want uint32", kv.Value.Type)
		}
		if a == 0 || a&(a-1) != 0 {
			return d.errf(ErrCorrupt, "alignment %d is not a power of two", a)
		}
		f.Alignment = a
	}
	return nil
}
