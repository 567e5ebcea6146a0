package gguf

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// sample describes the small valid file the bad-input tests corrupt. Tensor
// names have equal length so one can be renamed to another in place.
var sampleKVs = []KV{
	{"general.architecture", String("test")},
	{"general.alignment", Uint32(32)},
	{"test.str", String("hello")},
	{"test.arr", ArrayOf([]uint32{1, 2, 3})},
	{"test.bool", Bool(true)},
	{"test.nest", ArrayOf([]Array{NewArray([]int8{-1, 2}), NewArray([]string{"x"})})},
}

var sampleInfos = []TensorInfo{
	{Name: "t.aa", Dims: []uint64{8, 2}, Type: TypeF32},   // 64 bytes
	{Name: "t.bb", Dims: []uint64{16}, Type: TypeF32},     // 64 bytes
	{Name: "t.cc", Dims: []uint64{32, 2}, Type: TypeQ8_0}, // 68 bytes, padded to 96
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// outTensors gives each info random data.
func outTensors(infos []TensorInfo) []OutTensor {
	out := make([]OutTensor, len(infos))
	for i, t := range infos {
		out[i] = OutTensor{Info: t, Src: bytes.NewReader(randBytes(uint64(i), int(t.Size())))}
	}
	return out
}

// encode writes a file to memory.
func encode(tb testing.TB, version uint32, kvs []KV, tensors []OutTensor) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, version, kvs, 0, tensors); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func sampleFile(tb testing.TB) []byte { return encode(tb, 3, sampleKVs, outTensors(sampleInfos)) }

// decodeBytes parses a file held in memory.
func decodeBytes(name string, data []byte) (*File, error) {
	f, err := decode(bytes.NewReader(data), int64(len(data)), name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func writeTemp(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

func hashFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustOpen(tb testing.TB, path string) *File {
	tb.Helper()
	f, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// sameStructure reports the first difference between two parsed files,
// ignoring Path, Size and where the tensor data sits (a rewrite packs the
// tensors), but comparing the tensor data.
func sameStructure(a, b *File) error {
	if a.Version != b.Version || a.Alignment != b.Alignment || a.DataOffset != b.DataOffset {
		return fmt.Errorf("header: v%d align %d data %d vs v%d align %d data %d", a.Version, a.Alignment, a.DataOffset, b.Version, b.Alignment, b.DataOffset)
	}
	if len(a.Tensors) != len(b.Tensors) {
		return fmt.Errorf("%d vs %d tensors", len(a.Tensors), len(b.Tensors))
	}
	for i := range a.Tensors {
		ta, tb := a.Tensors[i], b.Tensors[i]
		if ta.Name != tb.Name || ta.Type != tb.Type || !reflect.DeepEqual(ta.Dims, tb.Dims) {
			return fmt.Errorf("tensor %d: %+v vs %+v", i, ta, tb)
		}
		da, erra := io.ReadAll(a.TensorReader(i))
		db, errb := io.ReadAll(b.TensorReader(i))
		if erra != nil || errb != nil || !bytes.Equal(da, db) {
			return fmt.Errorf("tensor %d %q: data differs (%v, %v)", i, ta.Name, erra, errb)
		}
	}
	if len(a.KVs) != len(b.KVs) {
		return fmt.Errorf("%d vs %d KVs", len(a.KVs), len(b.KVs))
	}
	for i := range a.KVs {
		// Compare encodings, so NaNs with equal bits are equal.
		if a.KVs[i].Key != b.KVs[i].Key || !bytes.Equal(encodeValue(a.KVs[i].Value), encodeValue(b.KVs[i].Value)) {
			return fmt.Errorf("kv %d: %v vs %v", i, a.KVs[i], b.KVs[i])
		}
	}
	return nil
}

func encodeValue(v Value) []byte {
	var buf bytes.Buffer
	e := &encoder{w: bufio.NewWriter(&buf)}
	e.u32(uint32(v.Type))
	e.value(v)
	e.w.Flush()
	return buf.Bytes()
}

func TestRoundTripModels(t *testing.T) {
	for _, path := range shared.Models(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f := mustOpen(t, path)
			out := filepath.Join(t.TempDir(), "out.gguf")
			if err := f.Edit().WriteFile(out); err != nil {
				t.Fatal(err)
			}
			if a, b := hashFile(t, path), hashFile(t, out); a != b {
				t.Fatalf("rewrite differs: sha256 %s, want %s", b, a)
			}
		})
	}
}

// allKVs uses all 13 value types, arrays of each, nested and empty arrays.
func allKVs(align uint32) []KV {
	return []KV{
		{"general.architecture", String("test")},
		{"general.alignment", Uint32(align)},
		{"u8", Uint8(200)}, {"i8", Int8(-100)}, {"u16", Uint16(60000)}, {"i16", Int16(-30000)},
		{"u32", Uint32(4e9)}, {"i32", Int32(-2e9)}, {"f32", Float32(-1.5)}, {"bool", Bool(false)},
		{"str", String("héllo ▁world\n")}, {"empty", String("")},
		{"u64", Uint64(1 << 63)}, {"i64", Int64(-1 << 62)}, {"f64", Float64(math.Pi)},
		{"a.u8", ArrayOf([]uint8{0, 255})}, {"a.i8", ArrayOf([]int8{-128, 127})},
		{"a.u16", ArrayOf([]uint16{1, 65535})}, {"a.i16", ArrayOf([]int16{-32768, 1})},
		{"a.u32", ArrayOf([]uint32{7})}, {"a.i32", Int32s([]int32{-1, 0, 1})},
		{"a.f32", Float32s([]float32{0.5, float32(math.Inf(-1))})}, {"a.bool", ArrayOf([]bool{true, false, true})},
		{"a.str", Strings([]string{"a", "", " spaced "})}, {"a.u64", ArrayOf([]uint64{math.MaxUint64})},
		{"a.i64", ArrayOf([]int64{math.MinInt64})}, {"a.f64", ArrayOf([]float64{1e300})},
		{"a.empty", ArrayOf([]string{})},
		{"a.nest", ArrayOf([]Array{
			NewArray([]uint32{1, 2}),
			NewArray([]Array{NewArray([]string{"deep"}), NewArray([]bool{})}),
			NewArray([]float64{}),
		})},
	}
}

// allTypes returns one tensor of every known type.
func allTypes() []TensorInfo {
	var infos []TensorInfo
	for i := range traits {
		typ := Type(i)
		if !typ.Known() {
			continue
		}
		infos = append(infos, TensorInfo{Name: "t." + typ.String(), Dims: []uint64{2 * typ.BlockSize(), 3}, Type: typ})
	}
	return infos
}

func TestRoundTripSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint32
		align   uint32
	}{{"v3-align64", 3, 64}, {"v2-align32", 2, 32}, {"v3-align1", 3, 1}, {"v3-align4096", 3, 4096}} {
		t.Run(tc.name, func(t *testing.T) {
			kvs := allKVs(tc.align)
			infos := allTypes()
			src := outTensors(infos)
			path := filepath.Join(t.TempDir(), "all.gguf")
			if err := WriteFile(path, tc.version, kvs, tc.align, src); err != nil {
				t.Fatal(err)
			}
			f := mustOpen(t, path)
			if f.Version != tc.version || f.Alignment != tc.align || f.DataOffset%int64(tc.align) != 0 {
				t.Fatalf("header: v%d align %d data %d", f.Version, f.Alignment, f.DataOffset)
			}
			if !reflect.DeepEqual(f.KVs, kvs) {
				t.Fatalf("KVs differ:\n got %v\nwant %v", f.KVs, kvs)
			}
			var off uint64
			for i, ti := range f.Tensors {
				want := infos[i]
				want.Offset = off
				off += ti.Size() + uint64(pad(int64(ti.Size()), int64(tc.align)))
				if !reflect.DeepEqual(ti, want) {
					t.Fatalf("tensor %d: %+v, want %+v", i, ti, want)
				}
				data := randBytes(uint64(i), int(ti.Size()))
				got, err := io.ReadAll(f.TensorReader(i))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("tensor %d data via TensorReader differs (%v)", i, err)
				}
				mapped, err := f.TensorBytes(i)
				if err != nil || !bytes.Equal(mapped, data) {
					t.Fatalf("tensor %d data via TensorBytes differs (%v)", i, err)
				}
			}
			if want := f.DataOffset + int64(off); f.Size != want {
				t.Fatalf("size %d, want %d (every tensor padded)", f.Size, want)
			}
			out := filepath.Join(t.TempDir(), "again.gguf")
			if err := f.Edit().WriteFile(out); err != nil {
				t.Fatal(err)
			}
			if a, b := hashFile(t, path), hashFile(t, out); a != b {
				t.Fatal("rewrite is not byte-identical")
			}
		})
	}
}

func TestLayoutMatchesGGML(t *testing.T) {
	// Hand-computed layout of the sample: header 24, KVs, infos, pad to 32,
	// tensors at 0, 64, 128 (t.cc is 68 bytes, padded to 96).
	data := sampleFile(t)
	f, err := decodeBytes("sample", data)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{0, 64, 128} {
		if f.Tensors[i].Offset != want {
			t.Errorf("tensor %d offset %d, want %d", i, f.Tensors[i].Offset, want)
		}
	}
	if f.DataOffset%32 != 0 || int64(len(data)) != f.DataOffset+224 {
		t.Errorf("data offset %d, size %d", f.DataOffset, len(data))
	}
	// Padding bytes are zero: between the infos and the data, and after t.cc.
	hdrEnd := bytes.Index(data, []byte("t.cc")) + 4 + 4 + 16 + 4 + 8
	for i := hdrEnd; i < int(f.DataOffset); i++ {
		if data[i] != 0 {
			t.Fatalf("header padding byte %d is %d", i, data[i])
		}
	}
	for i := f.DataOffset + 128 + 68; i < int64(len(data)); i++ {
		if data[i] != 0 {
			t.Fatalf("tensor padding byte %d is %d", i, data[i])
		}
	}
}

func TestGetters(t *testing.T) {
	f, err := decodeBytes("g", encode(t, 3, allKVs(32), nil))
	if err != nil {
		t.Fatal(err)
	}
	if f.Arch() != "test" {
		t.Errorf("Arch %q", f.Arch())
	}
	if s, ok := f.String("str"); !ok || s != "héllo ▁world\n" {
		t.Errorf("String: %q %v", s, ok)
	}
	if _, ok := f.String("u8"); ok {
		t.Error("String of a uint8 key succeeded")
	}
	for key, want := range map[string]uint64{"u8": 200, "u16": 60000, "u32": 4e9, "u64": 1 << 63, "general.alignment": 32} {
		if v, ok := f.Uint(key); !ok || v != want {
			t.Errorf("Uint(%s) = %d %v, want %d", key, v, ok, want)
		}
	}
	for _, key := range []string{"i8", "i32", "f32", "str", "missing", "a.u32"} {
		if v, ok := f.Uint(key); ok {
			t.Errorf("Uint(%s) = %d, want failure", key, v)
		}
	}
	for key, want := range map[string]float64{"f32": -1.5, "f64": math.Pi, "i8": -100, "u16": 60000} {
		if v, ok := f.Float(key); !ok || v != want {
			t.Errorf("Float(%s) = %v %v, want %v", key, v, ok, want)
		}
	}
	if _, ok := f.Float("str"); ok {
		t.Error("Float of a string succeeded")
	}
	if kv, ok := f.KV("a.i32"); !ok || !reflect.DeepEqual(kv.Value, Int32s([]int32{-1, 0, 1})) {
		t.Errorf("KV: %v %v", kv, ok)
	}
	if _, ok := f.KV("nope"); ok {
		t.Error("KV of a missing key succeeded")
	}
}

func TestTypes(t *testing.T) {
	for _, tc := range []struct {
		typ         Type
		name        string
		block, size uint64
	}{
		{TypeF32, "F32", 1, 4}, {TypeF16, "F16", 1, 2}, {TypeQ4_0, "Q4_0", 32, 18}, {TypeQ8_0, "Q8_0", 32, 34},
		{TypeQ4_K, "Q4_K", 256, 144}, {TypeQ6_K, "Q6_K", 256, 210}, {TypeIQ2_XXS, "IQ2_XXS", 256, 66},
		{TypeIQ4_NL, "IQ4_NL", 32, 18}, {TypeBF16, "BF16", 1, 2}, {TypeTQ1_0, "TQ1_0", 256, 54},
		{TypeMXFP4, "MXFP4", 32, 17}, {TypeI64, "I64", 1, 8},
	} {
		if tc.typ.String() != tc.name || tc.typ.BlockSize() != tc.block || tc.typ.TypeSize() != tc.size {
			t.Errorf("%d: %s %d %d, want %s %d %d", tc.typ, tc.typ, tc.typ.BlockSize(), tc.typ.TypeSize(), tc.name, tc.block, tc.size)
		}
		if p, err := ParseType(strings.ToLower(tc.name)); err != nil || p != tc.typ {
			t.Errorf("ParseType(%s) = %v, %v", tc.name, p, err)
		}
	}
	for _, id := range []Type{4, 5, 31, 32, 33, 36, 37, 38, 40, 1 << 31} {
		if id.Known() || id.BlockSize() != 0 {
			t.Errorf("type %d is known", id)
		}
		if _, err := id.RowSize(256); !errors.Is(err, ErrUnknownType) {
			t.Errorf("RowSize of type %d: %v", id, err)
		}
	}
	if n := len(allTypes()); n != 32 {
		t.Errorf("%d known types, want 32", n)
	}
	if r, err := TypeQ4_K.RowSize(512); err != nil || r != 288 {
		t.Errorf("Q4_K RowSize(512) = %d, %v", r, err)
	}
	if _, err := TypeQ4_K.RowSize(100); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Q4_K RowSize(100): %v", err)
	}
	if _, err := ParseType("Q4_2"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("ParseType(Q4_2): %v", err)
	}
	ti := TensorInfo{Dims: []uint64{256, 4, 2}, Type: TypeQ4_K}
	if ti.Elements() != 2048 || ti.Size() != 144*8 {
		t.Errorf("Elements %d Size %d", ti.Elements(), ti.Size())
	}
}

func TestEdit(t *testing.T) {
	path := writeTemp(t, "in.gguf", sampleFile(t))
	f := mustOpen(t, path)
	e := f.Edit()
	e.SetKV(KV{"test.str", String("changed")})
	e.SetKV(KV{"test.new", Uint64(7)})
	repl := randBytes(98, 8)
	if err := e.ReplaceTensor("t.bb", TensorInfo{Name: "t.cc", Dims: []uint64{2}, Type: TypeF32}, bytes.NewReader(repl)); err == nil {
		t.Fatal("replaced a tensor under the name of another")
	}
	if err := e.ReplaceTensor("t.dd", TensorInfo{Name: "t.dd", Dims: []uint64{2}, Type: TypeF32}, bytes.NewReader(repl)); err == nil {
		t.Fatal("replaced a missing tensor")
	}
	if err := e.ReplaceTensor("t.bb", TensorInfo{Name: "renamed", Dims: []uint64{2}, Type: TypeF32}, bytes.NewReader(repl)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.gguf")
	if err := e.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	g := mustOpen(t, out)
	var keys []string
	for _, kv := range g.KVs {
		keys = append(keys, kv.Key)
	}
	if got, want := strings.Join(keys, ","), "general.architecture,general.alignment,test.str,test.arr,test.bool,test.nest,test.new"; got != want {
		t.Errorf("keys %s, want %s", got, want)
	}
	if s, _ := g.String("test.str"); s != "changed" {
		t.Errorf("test.str = %q", s)
	}
	wantData := map[string][]byte{"t.aa": randBytes(0, 64), "renamed": repl, "t.cc": randBytes(2, 68)}
	for i, name := range []string{"t.aa", "renamed", "t.cc"} {
		if g.Tensors[i].Name != name {
			t.Fatalf("tensor %d is %q, want %q", i, g.Tensors[i].Name, name)
		}
		got, _ := io.ReadAll(g.TensorReader(i))
		if !bytes.Equal(got, wantData[name]) {
			t.Errorf("tensor %q data differs", name)
		}
	}
	// In-place rewrite of the source path works too.
	if err := f.Edit().WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

func TestWriteRefuses(t *testing.T) {
	good := OutTensor{Info: TensorInfo{Name: "x", Dims: []uint64{4}, Type: TypeF32}, Src: bytes.NewReader(make([]byte, 16))}
	for _, tc := range []struct {
		name    string
		version uint32
		kvs     []KV
		align   uint32
		ts      []OutTensor
	}{
		{"version 1", 1, nil, 0, nil},
		{"duplicate key", 3, []KV{{"a", Uint8(1)}, {"a", Uint8(2)}}, 0, nil},
		{"value type mismatch", 3, []KV{{"a", Value{ValueUint32, int32(1)}}}, 0, nil},
		{"array type mismatch", 3, []KV{{"a", Value{ValueArray, Array{ValueUint32, []int32{1}}}}}, 0, nil},
		{"unknown value type", 3, []KV{{"a", Value{13, uint8(1)}}}, 0, nil},
		{"alignment not power of two", 3, []KV{{"general.alignment", Uint32(48)}}, 0, nil},
		{"alignment wrong type", 3, []KV{{"general.alignment", Uint64(32)}}, 0, nil},
		{"alignment mismatch", 3, nil, 64, nil},
		{"duplicate tensor", 3, nil, 0, []OutTensor{good, good}},
		{"nil source", 3, nil, 0, []OutTensor{{Info: good.Info}}},
		{"bad dims", 3, nil, 0, []OutTensor{{Info: TensorInfo{Name: "x", Dims: []uint64{4, 0}, Type: TypeF32}, Src: good.Src}}},
		{"unknown type", 3, nil, 0, []OutTensor{{Info: TensorInfo{Name: "x", Dims: []uint64{4}, Type: 4}, Src: good.Src}}},
		{"short source", 3, nil, 0, []OutTensor{{Info: good.Info, Src: bytes.NewReader(make([]byte, 15))}}},
		{"long source", 3, nil, 0, []OutTensor{{Info: good.Info, Src: bytes.NewReader(make([]byte, 17))}}},
		{"long reader source", 3, nil, 0, []OutTensor{{Info: good.Info, Src: sectionSource{io.NewSectionReader(bytes.NewReader(make([]byte, 17)), 0, 17)}}}},
		{"failing source", 3, nil, 0, []OutTensor{{Info: good.Info, Src: WriterToFunc(func(io.Writer) (int64, error) { return 0, errors.New("boom") })}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Fresh readers: a bytes.Reader is consumed by a write.
			for i := range tc.ts {
				if r, ok := tc.ts[i].Src.(*bytes.Reader); ok {
					r.Seek(0, io.SeekStart)
				}
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "out.gguf")
			err := WriteFile(path, tc.version, tc.kvs, tc.align, tc.ts)
			if err == nil {
				t.Fatal("write succeeded")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left %d files behind: %v", len(ents), ents[0].Name())
			}
		})
	}
}

func TestAtomicFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.bin")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := CreateAtomic(path)
	if err != nil {
		t.Fatal(err)
	}
	a.WriteString("new")
	a.Abort()
	a.Abort()
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("abort changed the target: %q", b)
	}
	if a.Commit() == nil {
		t.Fatal("commit after abort succeeded")
	}
	a, err = CreateAtomic(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Abort()
	a.WriteString("new")
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	a.Abort() // no-op after Commit
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("target holds %q", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the old file's 0600", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the folder, want 1", len(ents))
	}
}

func TestClose(t *testing.T) {
	f := mustOpen(t, writeTemp(t, "c.gguf", sampleFile(t)))
	if _, err := f.TensorBytes(0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.TensorBytes(0); err == nil {
		t.Fatal("TensorBytes after Close succeeded")
	}
	if _, err := io.ReadAll(f.TensorReader(0)); err == nil {
		t.Fatal("TensorReader after Close succeeded")
	}
}
