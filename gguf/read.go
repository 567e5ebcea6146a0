package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
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

// value reads a value of type t; depth counts the arrays around it.
func (d *decoder) value(t ValueType, depth int) (Value, error) {
	var err error
	var v any
	switch t {
	case ValueUint8:
		v, err = d.u8()
	case ValueInt8:
		var x uint8
		x, err = d.u8()
		v = int8(x)
	case ValueUint16:
		v, err = d.u16()
	case ValueInt16:
		var x uint16
		x, err = d.u16()
		v = int16(x)
	case ValueUint32:
		v, err = d.u32()
	case ValueInt32:
		var x uint32
		x, err = d.u32()
		v = int32(x)
	case ValueFloat32:
		var x uint32
		x, err = d.u32()
		v = math.Float32frombits(x)
	case ValueBool:
		var x uint8
		if x, err = d.u8(); err == nil && x > 1 {
			return Value{}, d.errf(ErrCorrupt, "bool value %d", x)
		}
		v = x == 1
	case ValueString:
		v, err = d.str()
	case ValueUint64:
		v, err = d.u64()
	case ValueInt64:
		var x uint64
		x, err = d.u64()
		v = int64(x)
	case ValueFloat64:
		var x uint64
		x, err = d.u64()
		v = math.Float64frombits(x)
	case ValueArray:
		v, err = d.array(depth + 1)
	default:
		return Value{}, d.errf(ErrUnknownType, "value type %d", uint32(t))
	}
	if err != nil {
		return Value{}, err
	}
	return Value{Type: t, V: v}, nil
}

// array reads an array's element type, length and elements.
func (d *decoder) array(depth int) (Array, error) {
	if depth > maxDepth {
		return Array{}, d.errf(ErrCorrupt, "arrays nested deeper than %d", maxDepth)
	}
	et, err := d.u32()
	if err != nil {
		return Array{}, err
	}
	t := ValueType(et)
	if !t.known() {
		return Array{}, d.errf(ErrUnknownType, "array element type %d", et)
	}
	n, err := d.u64()
	if err != nil {
		return Array{}, err
	}
	if n > maxLen {
		return Array{}, d.errf(ErrCorrupt, "array length %d exceeds %d", n, uint64(maxLen))
	}
	min := uint64(t.size())
	switch t {
	case ValueString:
		min = 8
	case ValueArray:
		min = 4 + 8
	}
	if n*min > uint64(d.left()) {
		return Array{}, d.errf(ErrTruncated, "array of %d %s elements needs at least %d bytes, %d left", n, t, n*min, d.left())
	}
	outer := d.elem
	defer func() { d.elem = outer }()

	a := Array{Elem: t}
	switch t {
	case ValueUint8:
		s := make([]uint8, n)
		err = d.full(s)
		a.Values = s
	case ValueInt8:
		a.Values, err = fixed(d, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case ValueUint16:
		a.Values, err = fixed(d, n, 2, binary.LittleEndian.Uint16)
	case ValueInt16:
		a.Values, err = fixed(d, n, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case ValueUint32:
		a.Values, err = fixed(d, n, 4, binary.LittleEndian.Uint32)
	case ValueInt32:
		a.Values, err = fixed(d, n, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case ValueFloat32:
		a.Values, err = fixed(d, n, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case ValueUint64:
		a.Values, err = fixed(d, n, 8, binary.LittleEndian.Uint64)
	case ValueInt64:
		a.Values, err = fixed(d, n, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case ValueFloat64:
		a.Values, err = fixed(d, n, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case ValueBool:
		s := make([]bool, n)
		for i := range s {
			d.elem = int64(i)
			var x uint8
			if x, err = d.u8(); err != nil {
				break
			}
			if x > 1 {
				return Array{}, d.errf(ErrCorrupt, "bool value %d", x)
			}
			s[i] = x == 1
		}
		a.Values = s
	case ValueString:
		s := make([]string, n)
		for i := range s {
			d.elem = int64(i)
			if s[i], err = d.str(); err != nil {
				break
			}
		}
		a.Values = s
	case ValueArray:
		s := make([]Array, n)
		for i := range s {
			d.elem = int64(i)
			var v Value
			if v, err = d.value(ValueArray, depth); err != nil {
				break
			}
			s[i] = v.V.(Array)
		}
		a.Values = s
	}
	if err != nil {
		return Array{}, err
	}
	return a, nil
}

// fixed reads n fixed-size elements of size bytes each, decoding with conv.
func fixed[T any](d *decoder, n uint64, size int, conv func([]byte) T) ([]T, error) {
	s := make([]T, n)
	var chunk [4096]byte
	for i := 0; i < len(s); {
		k := min(len(s)-i, len(chunk)/size)
		b := chunk[:k*size]
		if err := d.full(b); err != nil {
			return nil, err
		}
		for j := range k {
			s[i+j] = conv(b[j*size:])
		}
		i += k
	}
	return s, nil
}

func (d *decoder) tensorInfos(f *File, n uint64) error {
	f.Tensors = make([]TensorInfo, 0, n)
	seen := make(map[string]struct{}, n)
	d.sect, d.cnt, d.elem = "tensor info", n, -1
	for i := uint64(0); i < n; i++ {
		d.idx, d.name, d.field = i, "", "name"
		var t TensorInfo
		var err error
		if t.Name, err = d.str(); err != nil {
			return err
		}
		d.name = t.Name
		if _, dup := seen[t.Name]; dup {
			return d.errf(ErrCorrupt, "duplicate tensor name")
		}
		seen[t.Name] = struct{}{}
		d.field = "ndims"
		nd, err := d.u32()
		if err != nil {
			return err
		}
		if nd < 1 || nd > maxDims {
			return d.errf(ErrCorrupt, "%d dims, want 1 to %d", nd, maxDims)
		}
		d.field = "dims"
		t.Dims = make([]uint64, nd)
		for j := range t.Dims {
			if t.Dims[j], err = d.u64(); err != nil {
				return err
			}
		}
		d.field = "type"
		typ, err := d.u32()
		if err != nil {
			return err
		}
		t.Type = Type(typ)
		d.field = "offset"
		if t.Offset, err = d.u64(); err != nil {
			return err
		}
		d.field = ""
		size, kind, detail := t.check()
		if kind != nil {
			return d.errf(kind, "%s", detail)
		}
		if t.Offset%uint64(f.Alignment) != 0 {
			return d.errf(ErrCorrupt, "offset %d is not a multiple of the alignment %d", t.Offset, f.Alignment)
		}
		if t.Offset > math.MaxInt64-size {
			return d.errf(ErrCorrupt, "offset %d plus size %d overflows", t.Offset, size)
		}
		f.Tensors = append(f.Tensors, t)
	}
	return nil
}

// layout places the data section after the header and checks that every
// tensor lies inside the file and that no two overlap.
func (d *decoder) layout(f *File) error {
	d.sect, d.cnt, d.name, d.field, d.elem = "padding before the data", 0, "", "", -1
	f.DataOffset = d.pos + pad(d.pos, int64(f.Alignment))
	if f.DataOffset > f.Size {
		return d.errf(ErrTruncated, "data section starts at byte %d, past the end of the file (%d bytes)", f.DataOffset, f.Size)
	}
	if len(f.Tensors) == 0 {
		return nil
	}

	// Tensors by offset. The layout is "packed" when it is what a writer
	// produces: the first at 0, each next one right after the previous,
	// padded. A packed layout running past the end means a cut file.
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, tb := &f.Tensors[a], &f.Tensors[b]
		if ta.Offset != tb.Offset {
			return cmpU64(ta.Offset, tb.Offset)
		}
		return a - b
	})
	packed := f.Tensors[order[0]].Offset == 0
	for k := 1; k < len(order) && packed; k++ {
		prev, t := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		end := int64(prev.Offset) + int64(prev.Size())
		packed = int64(t.Offset) == end+pad(end, int64(f.Alignment))
	}

	d.sect = "tensor"
	data := f.Size - f.DataOffset
	for i := range f.Tensors {
		t := &f.Tensors[i]
		end := int64(t.Offset) + int64(t.Size()) // no overflow: checked in tensorInfos
		if end > data {
			d.idx, d.cnt, d.name = uint64(i), uint64(len(f.Tensors)), t.Name
			kind, what := ErrCorrupt, "lies outside"
			if packed {
				kind, what = ErrTruncated, "runs past the end of"
			}
			return d.errf(kind, "data [%d, %d) %s the file (%d bytes)", f.DataOffset+int64(t.Offset), f.DataOffset+end, what, f.Size)
		}
	}
	for k := 1; k < len(order); k++ {
		prev, t := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if t.Offset < prev.Offset+prev.Size() {
			d.idx, d.cnt, d.name = uint64(order[k]), uint64(len(f.Tensors)), t.Name
			return d.errf(ErrCorrupt, "data at offset %d overlaps tensor %s at [%d, %d)", t.Offset, quote(prev.Name), prev.Offset, prev.Offset+prev.Size())
		}
	}
	return nil
}

// quote quotes a key or name for an error message, shortening a long one.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...(%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pad returns the bytes needed after off to reach a multiple of align:
//
//	(align - off%align) % align
func pad(off, align int64) int64 { return (align - off%align) % align }
