package gguf

import (
	"fmt"
	"math"
	"slices"
)

// tensorInfos reads the n tensor descriptions that follow the metadata,
// checking each name, shape and type.
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
