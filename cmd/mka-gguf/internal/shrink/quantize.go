package shrink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/quant"
)

// The keys llama.cpp's llama-quantize records about the importance matrix
// of a quantized file (tools/quantize: LLM_KV_QUANTIZE_IMATRIX_*); counts
// are written as uint32, as its metadata overrides are.
const (
	KeyImatrixFile    = "quantize.imatrix.file"
	KeyImatrixDataset = "quantize.imatrix.dataset"
	KeyImatrixEntries = "quantize.imatrix.entries_count"
	KeyImatrixChunks  = "quantize.imatrix.chunks_count"
)

// QuantizedAs names the file type of f when its weight matrices are
// already quantized ("" when they are F32, F16 or BF16): llama.cpp's
// quantizer refuses to quantize them again without AllowRequantize.
func QuantizedAs(f *gguf.File) string {
	for _, t := range f.Tensors {
		if qt := (qtensor{name: t.Name, dims: t.Dims}); !qt.quantizable() || gguf.IsFloat(t.Type) {
			continue
		}
		if id, ok := f.Uint("general.file_type"); ok {
			for _, n := range quant.Names() {
				if ft, _ := quant.Parse(n); uint64(ft.ID) == id {
					return n
				}
			}
		}
		return t.Type.String()
	}
	return ""
}

// RequantizeError is the refusal to quantize a quantized file again
// without --allow-requantize.
func RequantizeError(path, has, want string) error {
	return fmt.Errorf("%s is already quantized (%s): quantizing it again to %s loses more quality than quantizing its F16 or F32 original; give --allow-requantize to do it anyway", path, has, want)
}

// imatrixMeta returns the quantize.imatrix.* keys of OUT: the file (when
// one was given), the dataset and the counts, as placeholders that
// setUint32 fills in once the matrix is known.
func (o *Options) imatrixMeta(dataset string) []gguf.KV {
	var kvs []gguf.KV
	if o.Imatrix != "" {
		kvs = append(kvs, gguf.KV{Key: KeyImatrixFile, Value: gguf.String(o.Imatrix)})
	}
	return append(kvs,
		gguf.KV{Key: KeyImatrixDataset, Value: gguf.String(dataset)},
		gguf.KV{Key: KeyImatrixEntries, Value: gguf.Uint32(0)},
		gguf.KV{Key: KeyImatrixChunks, Value: gguf.Uint32(0)})
}

// setUint32 overwrites, in place, the value of the uint32 metadata key in
// the GGUF file at path (the file's layout does not change).
func setUint32(path, key string, v uint32) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	n := f.DataOffset
	f.Close()
	rw, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer rw.Close()
	head := make([]byte, n)
	if _, err := rw.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	pat := binary.LittleEndian.AppendUint64(nil, uint64(len(key)))
	pat = append(pat, key...)
	pat = binary.LittleEndian.AppendUint32(pat, uint32(gguf.ValueUint32))
	i := bytes.Index(head, pat)
	if i < 0 || bytes.Index(head[i+1:], pat) >= 0 {
		return fmt.Errorf("%s: uint32 key %s is not in the metadata exactly once", path, key)
	}
	if _, err := rw.WriteAt(binary.LittleEndian.AppendUint32(nil, v), int64(i+len(pat))); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return rw.Close()
}

// forOutput renames the entries of an importance matrix of IN's blocks to
// OUT's: output block j takes those of its heaviest original block;
// entries of removed blocks are left out.
func forOutput(vals map[string][]float32, p *merge.Plan) map[string][]float32 {
	to := map[int]int{}
	for j, ws := range p.Layout {
		to[merge.Heaviest(ws).Block] = j
	}
	out := make(map[string][]float32, len(vals))
	for name, v := range vals {
		b, suffix, ok := arch.BlockTensor(name)
		if !ok {
			out[name] = v
		} else if j, ok := to[b]; ok {
			out[fmt.Sprintf("blk.%d.%s", j, suffix)] = v
		}
	}
	return out
}

// writeQuantized writes OUT as merged into a temporary file beside out,
// gets the importance matrix (--imatrix, or from the merged or the
// original model), quantizes with llama.cpp's quantizer into another
// temporary file, checks it with llama.cpp and renames it to out.
// Temporary files are removed on success, error and Ctrl-C. It records
// the type, the importance matrix's source and the bits per weight in rep.
func (j *Job) writeQuantized(ctx context.Context, r *Result, out string, meta []gguf.KV, rep *Report) error {
	o := &j.o
	p := r.Plan
	ft, err := quant.Parse(o.Quant)
	if err != nil {
		return err
	}
	fused := files.TempBeside(out, "mka-fused")
	files.Alias(fused, out)
	defer os.Remove(fused)
	source := ""
	if o.usesImatrix() {
		_, source, err = o.Calib.Texts()
		if err != nil {
			return err
		}
		meta = append(meta, o.imatrixMeta(source)...)
	}
	j.phases.Next("write", fmt.Sprintf("%d -> %d blocks (before quantization)", p.Original, len(p.Layout)))
	if err := j.Write(ctx, r, fused, meta, false); err != nil {
		return err
	}
	var imat map[string][]float32
	if o.usesImatrix() {
		im, from, err := j.importance(ctx, fused)
		if err != nil {
			return err
		}
		imat = im.Values()
		if from != ImatrixMerged {
			imat = forOutput(imat, p)
		}
		for _, kv := range []struct {
			key string
			v   int
		}{{KeyImatrixEntries, len(imat)}, {KeyImatrixChunks, im.Chunks}} {
			if err := setUint32(fused, kv.key, uint32(kv.v)); err != nil {
				return err
			}
		}
		rep.Imatrix = string(from)
		if o.Imatrix != "" {
			rep.Imatrix = o.Imatrix
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	j.phases.Next("quantize", fmt.Sprintf("%s with llama.cpp's quantizer (importance matrix: %s)", ft.Name, orNone(rep.Imatrix)))
	if err := WriteVerified(ctx, out, "quantized", len(p.Layout), o.Verify, o.Load, func(tmp string) error {
		return quant.File(fused, tmp, ft, quant.Options{Threads: o.Threads, Imatrix: imat, AllowRequantize: o.AllowRequantize})
	}); err != nil {
		return err
	}
	rep.Quant = ft.Name
	if f, err := gguf.Open(out); err == nil {
		if s, err := f.Summary(); err == nil {
			rep.BitsPerWeight = s.BitsPerWeight
		}
		f.Close()
	}
	return nil
}

// orNone is s, or "none".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// importance returns the importance matrix of Quant and where it came
// from: --imatrix's file, or a calibration pass over the merged model (at
// fused) or the original one.
func (j *Job) importance(ctx context.Context, fused string) (*quant.Imatrix, ImatrixFrom, error) {
	o := &j.o
	if o.Imatrix != "" {
		im, err := quant.LoadImatrix(o.Imatrix)
		return im, ImatrixOriginal, err
	}
	src := fused
	if o.ImatrixFrom == ImatrixOriginal {
		src = o.In
	}
	j.phases.Next("importance matrix", fmt.Sprintf("from the %s model", o.ImatrixFrom))
	im, err := j.imatrix(ctx, src)
	return im, o.ImatrixFrom, err
}

// imatrix computes the importance matrix of the model at path on the
// calibration text.
func (j *Job) imatrix(ctx context.Context, path string) (*quant.Imatrix, error) {
	o := &j.o
	m, err := cgo.LoadModel(path, o.Load)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	texts, source, err := o.Calib.Texts()
	if err != nil {
		return nil, err
	}
	chunks, err := o.Calib.Chunks(m, texts, source, o.Calib.Seed)
	if err != nil {
		return nil, err
	}
	im, err := calib.Imatrix(ctx, m, chunks, o.Threads, o.Calib.Batch)
	if err != nil {
		return nil, err
	}
	im.Datasets = []string{source}
	return im, nil
}
