package quant

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// Imatrix is an importance matrix as llama.cpp's imatrix tool computes it:
// for each weight (by tensor name) the per-column sums of squared input
// activations of its matrix multiplications, and the number of activation
// rows summed. Only dense weights are handled (one matrix per name).
type Imatrix struct {
	Sums      map[string][]float64 // per column Σ x², len = the weight's ne0
	Counts    map[string]int       // activation rows summed
	Chunks    int                  // calibration chunks processed
	ChunkSize int                  // tokens per chunk
	Datasets  []string             // names of the calibration data
}

// NewImatrix returns an empty importance matrix.
func NewImatrix() *Imatrix {
	return &Imatrix{Sums: map[string][]float64{}, Counts: map[string]int{}}
}

// Add accumulates rows activation rows of cols floats (row-major, as
// cgo.MatMulFunc hands them) for weight. Input whose cols differ from what
// weight already holds is ignored (it cannot belong to the same weight).
func (im *Imatrix) Add(weight string, cols, rows int, data []float32) {
	if cols <= 0 || rows <= 0 {
		return
	}
	rows = min(rows, len(data)/cols)
	if rows <= 0 {
		return
	}
	if im.Sums == nil {
		im.Sums = map[string][]float64{}
	}
	if im.Counts == nil {
		im.Counts = map[string]int{}
	}
	s, ok := im.Sums[weight]
	if !ok {
		s = make([]float64, cols)
		im.Sums[weight] = s
	} else if len(s) != cols {
		return
	}
	for r := range rows {
		row := data[r*cols : (r+1)*cols]
		for j, v := range row {
			s[j] += float64(v) * float64(v)
		}
	}
	im.Counts[weight] += rows
}

// Values returns, per weight, the mean squared activation of each column
// (sum / count): the importance llama.cpp's quantizer takes (Options.Imatrix).
// Weights with no rows are left out.
func (im *Imatrix) Values() map[string][]float32 {
	out := make(map[string][]float32, len(im.Sums))
	for name, s := range im.Sums {
		c := im.Counts[name]
		if c <= 0 {
			continue
		}
		v := make([]float32, len(s))
		for j, x := range s {
			v[j] = float32(x / float64(c))
		}
		out[name] = v
	}
	return out
}

// GGUF imatrix format (llama.cpp b5900 and later).
const (
	imatrixSum2   = ".in_sum2"
	imatrixCounts = ".counts"
)

// Save writes im atomically to path in llama.cpp's GGUF imatrix format:
// general.type "imatrix", imatrix.datasets, imatrix.chunk_count and
// imatrix.chunk_size, and per weight the F32 tensors "<name>.in_sum2"
// (dims [ne0, 1]) and "<name>.counts" (dims [1, 1]), names sorted.
func (im *Imatrix) Save(path string) error {
	names := make([]string, 0, len(im.Sums))
	for name := range im.Sums {
		if im.Counts[name] > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	datasets := im.Datasets
	if datasets == nil {
		datasets = []string{}
	}
	kvs := []gguf.KV{
		{Key: "general.type", Value: gguf.String("imatrix")},
		{Key: "imatrix.datasets", Value: gguf.Strings(datasets)},
		{Key: "imatrix.chunk_count", Value: gguf.Uint32(uint32(im.Chunks))},
		{Key: "imatrix.chunk_size", Value: gguf.Uint32(uint32(im.ChunkSize))},
	}
	tensors := make([]gguf.OutTensor, 0, 2*len(names))
	for _, name := range names {
		s := im.Sums[name]
		v := make([]float32, len(s))
		for j, x := range s {
			v[j] = float32(x)
		}
		tensors = append(tensors,
			gguf.OutTensor{Info: gguf.TensorInfo{Name: name + imatrixSum2, Dims: []uint64{uint64(len(s)), 1}, Type: gguf.TypeF32}, Src: f32Source(v)},
			gguf.OutTensor{Info: gguf.TensorInfo{Name: name + imatrixCounts, Dims: []uint64{1, 1}, Type: gguf.TypeF32}, Src: f32Source([]float32{float32(im.Counts[name])})})
	}
	return gguf.WriteFile(path, 3, kvs, 0, tensors)
}

// f32Source writes v as little-endian float32.
func f32Source(v []float32) io.WriterTo {
	return gguf.WriterToFunc(func(w io.Writer) (int64, error) {
		b, err := gguf.EncodeFloats(gguf.TypeF32, make([]byte, 4*len(v)), v)
		if err != nil {
			return 0, err
		}
		n, err := w.Write(b)
		return int64(n), err
	})
}

// ErrNotImatrix is returned by LoadImatrix for a GGUF file that is not an
// importance matrix.
var ErrNotImatrix = errors.New("not a GGUF importance matrix")

// LoadImatrix reads an importance matrix written by Save or by llama.cpp's
// imatrix tool (GGUF format). Weights with several matrices (MoE experts)
// are refused.
func LoadImatrix(path string) (*Imatrix, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if typ, _ := f.String("general.type"); typ != "imatrix" {
		return nil, fmt.Errorf("%s: %w (general.type %q)", path, ErrNotImatrix, typ)
	}
	im := NewImatrix()
	if n, ok := f.Uint("imatrix.chunk_count"); ok {
		im.Chunks = int(n)
	}
	if n, ok := f.Uint("imatrix.chunk_size"); ok {
		im.ChunkSize = int(n)
	}
	if kv, ok := f.KV("imatrix.datasets"); ok {
		if a, ok := kv.Value.V.(gguf.Array); ok {
			if ss, ok := a.Values.([]string); ok {
				im.Datasets = slices.Clone(ss)
			}
		}
	}
	for i, t := range f.Tensors {
		name, ok := strings.CutSuffix(t.Name, imatrixSum2)
		if !ok {
			continue
		}
		if t.Type != gguf.TypeF32 || len(t.Dims) > 2 || (len(t.Dims) == 2 && t.Dims[1] != 1) {
			return nil, fmt.Errorf("%s: %s: %w (type %s, dims %v; only dense F32 [ne0, 1] is supported)", path, t.Name, ErrNotImatrix, t.Type, t.Dims)
		}
		ci, ok := f.Tensor(name + imatrixCounts)
		if !ok {
			return nil, fmt.Errorf("%s: %w: %s has no %s", path, ErrNotImatrix, t.Name, name+imatrixCounts)
		}
		if ct := f.Tensors[ci]; ct.Type != gguf.TypeF32 || ct.Elements() != 1 {
			return nil, fmt.Errorf("%s: %s: %w (type %s, dims %v)", path, ct.Name, ErrNotImatrix, ct.Type, ct.Dims)
		}
		sums, err := readF32(f, i)
		if err != nil {
			return nil, err
		}
		cnt, err := readF32(f, ci)
		if err != nil {
			return nil, err
		}
		s := make([]float64, len(sums))
		for j, x := range sums {
			s[j] = float64(x)
		}
		im.Sums[name] = s
		im.Counts[name] = int(math.Round(float64(cnt[0])))
	}
	return im, nil
}

// readF32 reads the F32 data of tensor i.
func readF32(f *gguf.File, i int) ([]float32, error) {
	b := make([]byte, f.Tensors[i].Size())
	if _, err := io.ReadFull(f.TensorReader(i), b); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, f.Tensors[i].Name, err)
	}
	v := make([]float32, len(b)/4)
	if err := gguf.DecodeFloats(gguf.TypeF32, b, v); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, f.Tensors[i].Name, err)
	}
	return v, nil
}
