package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Positions in the sample file, found from the unique key and name bytes.

// keyAt returns the position of key's bytes (its type follows them).
func keyAt(data []byte, key string) int {
	var p []byte
	p = binary.LittleEndian.AppendUint64(p, uint64(len(key)))
	p = append(p, key...)
	i := bytes.Index(data, p)
	if i < 0 {
		panic("no key " + key)
	}
	return i + 8
}

// valueAt returns the position of key's value.
func valueAt(data []byte, key string) int { return keyAt(data, key) + len(key) + 4 }

// infoAt returns the position of tensor name's info fields after the name:
// ndims, then dims, type and offset.
func infoAt(data []byte, name string) int { return keyAt(data, name) + len(name) }

func dimAt(data []byte, name string, j int) int { return infoAt(data, name) + 4 + 8*j }

func typeAt(data []byte, name string) int {
	nd := int(binary.LittleEndian.Uint32(data[infoAt(data, name):]))
	return infoAt(data, name) + 4 + 8*nd
}

func offsetAt(data []byte, name string) int { return typeAt(data, name) + 4 }

func put32(at func([]byte) int, v uint32) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[at(b):], v); return b }
}

func put64(at func([]byte) int, v uint64) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint64(b[at(b):], v); return b }
}

func cut(at func([]byte) int) func([]byte) []byte {
	return func(b []byte) []byte { return b[:at(b)] }
}

func at(n int) func([]byte) int { return func([]byte) int { return n } }

// deepNest builds a file whose one key holds arrays nested depth deep.
func deepNest(depth int) []byte {
	b := []byte(magic)
	b = binary.LittleEndian.AppendUint32(b, 3)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = binary.LittleEndian.AppendUint64(b, 4)
	b = append(b, "deep"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(ValueArray))
	for range depth - 1 {
		b = binary.LittleEndian.AppendUint32(b, uint32(ValueArray))
		b = binary.LittleEndian.AppendUint64(b, 1)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(ValueUint8))
	b = binary.LittleEndian.AppendUint64(b, 0)
	return append(b, make([]byte, 32)...)
}

type badCase struct {
	name string
	data []byte
	want error
}

// badCases returns corrupt variants of the sample file, each with the
// sentinel Open must return.
func badCases(tb testing.TB) []badCase {
	good := sampleFile(tb)
	f, err := decodeBytes("sample", good)
	if err != nil {
		tb.Fatal(err)
	}
	dataOff := int(f.DataOffset)
	headerEnd := offsetAt(good, "t.cc") + 8
	mk := func(mut func([]byte) []byte) []byte { return mut(bytes.Clone(good)) }
	str := func(b []byte) int { return valueAt(b, "test.str") }
	arrLen := func(b []byte) int { return valueAt(b, "test.arr") + 4 }
	return []badCase{
		{"empty", nil, ErrTruncated},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ErrBadMagic},
		{"short magic", []byte("GG"), ErrTruncated},
		{"truncated header", good[:10], ErrTruncated},
		{"truncated counts", good[:20], ErrTruncated},
		{"truncated metadata", mk(cut(func(b []byte) int { return valueAt(b, "test.nest") + 30 })), ErrTruncated},
		{"truncated key", mk(cut(func(b []byte) int { return keyAt(b, "test.nest") + 3 })), ErrTruncated},
		{"truncated before the counts check", mk(cut(func(b []byte) int { return str(b) + 10 })), ErrTruncated},
		{"truncated tensor infos", mk(cut(func(b []byte) int { return keyAt(b, "t.bb") + 2 })), ErrTruncated},
		{"truncated before data", good[:headerEnd+1], ErrTruncated},
		{"truncated in data", good[:dataOff+100], ErrTruncated},
		{"truncated last tensor", good[:len(good)-40], ErrTruncated},
		{"version 1", mk(put32(at(4), 1)), ErrUnsupportedVersion},
		{"version 4", mk(put32(at(4), 4)), ErrUnsupportedVersion},
		{"version 0", mk(put32(at(4), 0)), ErrUnsupportedVersion},
		{"big-endian", mk(put32(at(4), 3<<24)), ErrUnsupportedVersion},
		{"absurd tensor count", mk(put64(at(8), 1<<40)), ErrCorrupt},
		{"absurd kv count", mk(put64(at(16), 1<<40)), ErrCorrupt},
		{"counts past end", mk(put64(at(8), 1000)), ErrTruncated},
		{"absurd string length", mk(put64(str, 1<<60)), ErrCorrupt},
		{"string past end", mk(put64(str, 1<<20)), ErrTruncated},
		{"absurd key length", mk(put64(func(b []byte) int { return keyAt(b, "test.str") - 8 }, math.MaxUint64)), ErrCorrupt},
		{"absurd array length", mk(put64(arrLen, 1<<62)), ErrCorrupt},
		{"array past end", mk(put64(arrLen, 1<<30)), ErrTruncated},
		{"unknown value type", mk(put32(func(b []byte) int { return str(b) - 4 }, 13)), ErrUnknownType},
		{"unknown array type", mk(put32(func(b []byte) int { return valueAt(b, "test.arr") }, 99)), ErrUnknownType},
		{"bool not 0 or 1", mk(func(b []byte) []byte { b[valueAt(b, "test.bool")] = 2; return b }), ErrCorrupt},
		{"duplicate key", mk(func(b []byte) []byte { copy(b[keyAt(b, "test.str"):], "test.arr"); return b }), ErrCorrupt},
		{"nested too deep", deepNest(maxDepth + 1), ErrCorrupt},
		{"alignment 0", mk(put32(func(b []byte) int { return valueAt(b, alignmentKey) }, 0)), ErrCorrupt},
		{"alignment 48", mk(put32(func(b []byte) int { return valueAt(b, alignmentKey) }, 48)), ErrCorrupt},
		{"alignment int32", mk(put32(func(b []byte) int { return valueAt(b, alignmentKey) - 4 }, uint32(ValueInt32))), ErrCorrupt},
		{"unknown tensor type", mk(put32(func(b []byte) int { return typeAt(b, "t.bb") }, 99)), ErrUnknownType},
		{"type 4 (Q4_2, removed)", mk(put32(func(b []byte) int { return typeAt(b, "t.bb") }, 4)), ErrUnknownType},
		{"type 31 (Q4_0_4_4, removed)", mk(put32(func(b []byte) int { return typeAt(b, "t.bb") }, 31)), ErrUnknownType},
		{"ndims 0", mk(put32(func(b []byte) int { return infoAt(b, "t.aa") }, 0)), ErrCorrupt},
		{"ndims 5", mk(put32(func(b []byte) int { return infoAt(b, "t.aa") }, 5)), ErrCorrupt},
		{"dim 0", mk(put64(func(b []byte) int { return dimAt(b, "t.aa", 1) }, 0)), ErrCorrupt},
		{"row not a block multiple", mk(put64(func(b []byte) int { return dimAt(b, "t.cc", 0) }, 48)), ErrCorrupt},
		{"element count overflow", mk(func(b []byte) []byte {
			put64(func(b []byte) int { return dimAt(b, "t.aa", 0) }, 1<<40)(b)
			return put64(func(b []byte) int { return dimAt(b, "t.aa", 1) }, 1<<40)(b)
		}), ErrCorrupt},
		{"byte size overflow", mk(put64(func(b []byte) int { return dimAt(b, "t.aa", 1) }, 1<<61)), ErrCorrupt},
		{"offset overflow", mk(put64(func(b []byte) int { return offsetAt(b, "t.bb") }, math.MaxUint64-31)), ErrCorrupt},
		{"tensor offset outside the file", mk(put64(func(b []byte) int { return offsetAt(b, "t.bb") }, 1<<20)), ErrCorrupt},
		{"tensor size outside the file", mk(put64(func(b []byte) int { return dimAt(b, "t.aa", 1) }, 1<<30)), ErrCorrupt},
		{"misaligned offset", mk(put64(func(b []byte) int { return offsetAt(b, "t.bb") }, 68)), ErrCorrupt},
		{"overlapping tensors", mk(put64(func(b []byte) int { return offsetAt(b, "t.bb") }, 32)), ErrCorrupt},
		{"same offset", mk(put64(func(b []byte) int { return offsetAt(b, "t.cc") }, 0)), ErrCorrupt},
		{"duplicate tensor name", mk(func(b []byte) []byte { copy(b[keyAt(b, "t.bb"):], "t.aa"); return b }), ErrCorrupt},
	}
}

func TestOpenBad(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "missing.gguf")
		_, err := Open(path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("got %v", err)
		}
	})
	for _, tc := range badCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.NewReplacer(" ", "_", "(", "", ")", "", ",", "").Replace(tc.name)+".gguf")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if !errors.Is(err, tc.want) {
				t.Errorf("error does not wrap %v", tc.want)
			}
			if !strings.HasPrefix(msg, path+": gguf: ") {
				t.Errorf("error does not start with %q", path+": gguf: ")
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error spans lines")
			}
		})
	}
}

func TestOpenGoodVariants(t *testing.T) {
	// Valid files that exercise edge cases of the reader.
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"no tensors, no kvs", encode(t, 3, nil, nil)},
		{"no tensors", encode(t, 3, sampleKVs, nil)},
		{"nested at the limit", deepNest(maxDepth)},
		{"v2", encode(t, 2, sampleKVs, outTensors(sampleInfos))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(writeTemp(t, "ok.gguf", tc.data))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		})
	}
}
