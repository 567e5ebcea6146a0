package gguf

import (
	"fmt"
	"math"
)

// ValueType is the type of a metadata value (enum gguf_type).
type ValueType uint32

// Metadata value types, with their ids on the wire.
const (
	ValueUint8   ValueType = 0
	ValueInt8    ValueType = 1
	ValueUint16  ValueType = 2
	ValueInt16   ValueType = 3
	ValueUint32  ValueType = 4
	ValueInt32   ValueType = 5
	ValueFloat32 ValueType = 6
	ValueBool    ValueType = 7
	ValueString  ValueType = 8
	ValueArray   ValueType = 9
	ValueUint64  ValueType = 10
	ValueInt64   ValueType = 11
	ValueFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
}

// String returns the type's name ("uint32", "string", "array"), or
// "valuetype(N)" for an unknown id.
func (t ValueType) String() string {
	if t.known() {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

func (t ValueType) known() bool { return uint64(t) < uint64(len(valueTypeNames)) }

// size returns the wire size of a fixed-size value, or 0 for string and array.
func (t ValueType) size() int {
	switch t {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}

// Value is a metadata value with its exact wire type, so that writing it back
// gives the same bytes. V holds the Go type matching Type:
//
//	ValueUint8 uint8, ValueInt8 int8, ValueUint16 uint16, ValueInt16 int16,
//	ValueUint32 uint32, ValueInt32 int32, ValueFloat32 float32, ValueBool bool,
//	ValueString string, ValueUint64 uint64, ValueInt64 int64,
//	ValueFloat64 float64, ValueArray Array.
//
// Build values with the constructors (String, Uint32, ArrayOf, ...).
type Value struct {
	Type ValueType
	V    any
}

// Array is an array value. Values holds a slice of the Go type matching Elem
// ([]uint32 for ValueUint32, []string for ValueString, []Array for nested
// arrays of ValueArray, and so on as for Value).
type Array struct {
	Elem   ValueType
	Values any
}

// Len returns the number of elements, or 0 when Values does not match Elem.
func (a Array) Len() int {
	switch s := a.Values.(type) {
	case []uint8:
		return len(s)
	case []int8:
		return len(s)
	case []uint16:
		return len(s)
	case []int16:
		return len(s)
	case []uint32:
		return len(s)
	case []int32:
		return len(s)
	case []float32:
		return len(s)
	case []bool:
		return len(s)
	case []string:
		return len(s)
	case []Array:
		return len(s)
	case []uint64:
		return len(s)
	case []int64:
		return len(s)
	case []float64:
		return len(s)
	}
	return 0
}

// KV is one metadata key-value pair.
type KV struct {
	Key   string
	Value Value
}

// Elem is the set of Go element types an Array can hold.
type Elem interface {
	uint8 | int8 | uint16 | int16 | uint32 | int32 | float32 | bool | string | uint64 | int64 | float64 | Array
}

// NewArray returns an Array of vs with the matching element type, for use
// inside a nested array.
func NewArray[T Elem](vs []T) Array {
	var t ValueType
	switch any(vs).(type) {
	case []uint8:
		t = ValueUint8
	case []int8:
		t = ValueInt8
	case []uint16:
		t = ValueUint16
	case []int16:
		t = ValueInt16
	case []uint32:
		t = ValueUint32
	case []int32:
		t = ValueInt32
	case []float32:
		t = ValueFloat32
	case []bool:
		t = ValueBool
	case []string:
		t = ValueString
	case []Array:
		t = ValueArray
	case []uint64:
		t = ValueUint64
	case []int64:
		t = ValueInt64
	case []float64:
		t = ValueFloat64
	}
	return Array{Elem: t, Values: vs}
}

// ArrayOf returns an array value of vs, e.g. ArrayOf([]uint64{1, 2}).
func ArrayOf[T Elem](vs []T) Value { return Value{ValueArray, NewArray(vs)} }

// Strings returns an array value of strings.
func Strings(vs []string) Value { return ArrayOf(vs) }

// Int32s returns an array value of int32.
func Int32s(vs []int32) Value { return ArrayOf(vs) }

// Float32s returns an array value of float32.
func Float32s(vs []float32) Value { return ArrayOf(vs) }

// Uint8 returns a uint8 value.
func Uint8(v uint8) Value { return Value{ValueUint8, v} }

// Int8 returns an int8 value.
func Int8(v int8) Value { return Value{ValueInt8, v} }

// Uint16 returns a uint16 value.
func Uint16(v uint16) Value { return Value{ValueUint16, v} }

// Int16 returns an int16 value.
func Int16(v int16) Value { return Value{ValueInt16, v} }

// Uint32 returns a uint32 value.
func Uint32(v uint32) Value { return Value{ValueUint32, v} }

// Int32 returns an int32 value.
func Int32(v int32) Value { return Value{ValueInt32, v} }

// Float32 returns a float32 value.
func Float32(v float32) Value { return Value{ValueFloat32, v} }

// Bool returns a bool value.
func Bool(v bool) Value { return Value{ValueBool, v} }

// String returns a string value.
func String(v string) Value { return Value{ValueString, v} }

// Uint64 returns a uint64 value.
func Uint64(v uint64) Value { return Value{ValueUint64, v} }

// Int64 returns an int64 value.
func Int64(v int64) Value { return Value{ValueInt64, v} }

// Float64 returns a float64 value.
func Float64(v float64) Value { return Value{ValueFloat64, v} }

// uintValue returns an integer value of any integer type as a uint64; false
// for a negative or non-integer value.
func (v Value) uintValue() (uint64, bool) {
	switch x := v.V.(type) {
	case uint8:
		return uint64(x), v.Type == ValueUint8
	case uint16:
		return uint64(x), v.Type == ValueUint16
	case uint32:
		return uint64(x), v.Type == ValueUint32
	case uint64:
		return x, v.Type == ValueUint64
	case int8:
		return uint64(x), v.Type == ValueInt8 && x >= 0
	case int16:
		return uint64(x), v.Type == ValueInt16 && x >= 0
	case int32:
		return uint64(x), v.Type == ValueInt32 && x >= 0
	case int64:
		return uint64(x), v.Type == ValueInt64 && x >= 0
	}
	return 0, false
}

// floatValue returns a numeric value as a float64.
func (v Value) floatValue() (float64, bool) {
	switch x := v.V.(type) {
	case float32:
		return float64(x), v.Type == ValueFloat32
	case float64:
		return x, v.Type == ValueFloat64
	case int8:
		return float64(x), v.Type == ValueInt8
	case int16:
		return float64(x), v.Type == ValueInt16
	case int32:
		return float64(x), v.Type == ValueInt32
	case int64:
		return float64(x), v.Type == ValueInt64
	}
	if u, ok := v.uintValue(); ok {
		return float64(u), true
	}
	return math.NaN(), false
}

// maxDepth is the deepest nesting of arrays accepted, counting the outer
// array as 1. llama.cpp accepts no nested arrays at all.
const maxDepth = 8

// check reports whether v holds the Go type its Type names, recursively.
func (v Value) check() error {
	if v.Type == ValueArray {
		a, ok := v.V.(Array)
		if !ok {
			return fmt.Errorf("array value holds %T, want gguf.Array", v.V)
		}
		return a.check(1)
	}
	if !v.Type.known() {
		return fmt.Errorf("unknown value type %d", uint32(v.Type))
	}
	if want := goType(v.Type); fmt.Sprintf("%T", v.V) != want {
		return fmt.Errorf("%s value holds %T, want %s", v.Type, v.V, want)
	}
	return nil
}

func (a Array) check(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("arrays nested deeper than %d", maxDepth)
	}
	if !a.Elem.known() {
		return fmt.Errorf("array of unknown value type %d", uint32(a.Elem))
	}
	if want := "[]" + goType(a.Elem); fmt.Sprintf("%T", a.Values) != want {
		return fmt.Errorf("array of %s holds %T, want %s", a.Elem, a.Values, want)
	}
	if sub, ok := a.Values.([]Array); ok {
		for i, s := range sub {
			if err := s.check(depth + 1); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	}
	return nil
}

func goType(t ValueType) string {
	if t == ValueArray {
		return "gguf.Array"
	}
	return valueTypeNames[t]
}
