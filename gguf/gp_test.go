package gguf

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	gp "github.com/gpustack/gguf-parser-go"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// gpValue turns a gguf-parser-go value into the form of ourValue.
func gpValue(t gp.GGUFMetadataValueType, v any) any {
	if t != gp.GGUFMetadataValueTypeArray {
		return v
	}
	a := v.(gp.GGUFMetadataKVArrayValue)
	out := []any{uint32(a.Type), a.Len}
	for _, x := range a.Array {
		out = append(out, gpValue(a.Type, x))
	}
	return out
}

// ourValue normalizes our value as gguf-parser-go reports it: strings with
// surrounding white space trimmed (it trims), arrays as [type, len, items...].
func ourValue(v Value) any {
	switch x := v.V.(type) {
	case string:
		return strings.TrimSpace(x)
	case Array:
		out := []any{uint32(x.Elem), uint64(x.Len())}
		rv := reflect.ValueOf(x.Values)
		for i := range rv.Len() {
			e := rv.Index(i).Interface()
			if sub, ok := e.(Array); ok {
				out = append(out, ourValue(Value{ValueArray, sub}))
			} else {
				out = append(out, ourValue(Value{x.Elem, e}))
			}
		}
		return out
	}
	return v.V
}

// crossCheck compares our reading of path with gguf-parser-go's.
func crossCheck(t *testing.T, path string) {
	f := mustOpen(t, path)
	gf, err := gp.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(f.DataOffset) != gf.TensorDataStartOffset || uint32(gf.Header.Version) != f.Version {
		t.Errorf("data offset %d vs %d, version %d vs %d", f.DataOffset, gf.TensorDataStartOffset, f.Version, gf.Header.Version)
	}
	if len(gf.TensorInfos) != len(f.Tensors) {
		t.Fatalf("%d tensors vs %d", len(f.Tensors), len(gf.TensorInfos))
	}
	for i, ti := range f.Tensors {
		g := gf.TensorInfos[i]
		if ti.Name != g.Name || uint32(ti.Type) != uint32(g.Type) || !reflect.DeepEqual(ti.Dims, g.Dimensions) || ti.Offset != g.Offset {
			t.Errorf("tensor %d: %+v vs %s %v %v %d", i, ti, g.Name, g.Type, g.Dimensions, g.Offset)
		}
		if ti.Size() != g.Bytes() || ti.Elements() != g.Elements() {
			t.Errorf("tensor %d: size %d/%d vs %d/%d", i, ti.Size(), ti.Elements(), g.Bytes(), g.Elements())
		}
	}
	var ours []KV
	for _, kv := range f.KVs {
		if kv.Key != "split.no" { // gguf-parser-go drops it
			ours = append(ours, kv)
		}
	}
	if len(ours) != len(gf.Header.MetadataKV) {
		t.Fatalf("%d KVs vs %d", len(ours), len(gf.Header.MetadataKV))
	}
	for i, kv := range ours {
		g := gf.Header.MetadataKV[i]
		if kv.Key != g.Key || uint32(kv.Value.Type) != uint32(g.ValueType) {
			t.Errorf("kv %d: %s %s vs %s %v", i, kv.Key, kv.Value.Type, g.Key, g.ValueType)
			continue
		}
		if a, b := ourValue(kv.Value), gpValue(g.ValueType, g.Value); !reflect.DeepEqual(a, b) {
			t.Errorf("kv %d %s: values differ: %.200s vs %.200s", i, kv.Key, fmt.Sprint(a), fmt.Sprint(b))
		}
	}
	s, err := f.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if s.Parameters != sumElements(f) || s.Architecture != f.Arch() {
		t.Errorf("summary %+v", s)
	}
	if n, _ := f.Uint(f.Arch() + ".block_count"); s.BlockCount != n {
		t.Errorf("summary block count %d, want %d", s.BlockCount, n)
	}
}

func sumElements(f *File) uint64 {
	var n uint64
	for _, t := range f.Tensors {
		n += t.Elements()
	}
	return n
}

func TestCrossCheckModels(t *testing.T) {
	for _, path := range shared.Models(t) {
		t.Run(filepath.Base(path), func(t *testing.T) { crossCheck(t, path) })
	}
}

func TestCrossCheckSynthetic(t *testing.T) {
	kvs := append(allKVs(64), KV{"split.no", Uint16(0)})
	path := filepath.Join(t.TempDir(), "all.gguf")
	if err := WriteFile(path, 3, kvs, 0, outTensors(allTypes())); err != nil {
		t.Fatal(err)
	}
	crossCheck(t, path)
}

func TestSummaryRecoversPanic(t *testing.T) {
	// A nested array in general.architecture makes gguf-parser-go panic
	// (its typed getters panic on a type mismatch); Summary must not.
	path := writeTemp(t, "p.gguf", encode(t, 3, []KV{{"general.architecture", ArrayOf([]Array{NewArray([]uint8{1})})}}, nil))
	f := mustOpen(t, path)
	_, err := f.Summary()
	t.Log(err)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Summary: %v", err)
	}
}
