package gguf

import (
	"encoding/binary"
	"math"
)

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
