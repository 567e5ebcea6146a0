package shrink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/quant"
)

// Provenance returns the mka.* keys recorded in the output of r: the tool
// version, the method, IN's SHA-256 (srcSHA) and block count, the layout,
// the fusion weights and the alignment.
func Provenance(r *Result, version, srcSHA string) []gguf.KV {
	p := r.Plan
	var lambdas []float32
	var layout []string
	for _, st := range p.Steps {
		if st.Kind == merge.StepFuse {
			lambdas = append(lambdas, float32(st.Lambda))
		}
	}
	for o, ws := range p.Layout {
		parts := make([]string, len(ws))
		for i, w := range ws {
			parts[i] = fmt.Sprintf("%d:%.4f", w.Block, w.W)
		}
		layout = append(layout, fmt.Sprintf("%d=%s", o, strings.Join(parts, "+")))
	}
	kvs := []gguf.KV{
		{Key: "mka.version", Value: gguf.String(version)},
		{Key: "mka.method", Value: gguf.String(string(r.Method))},
		{Key: "mka.source_sha256", Value: gguf.String(srcSHA)},
		{Key: "mka.source_block_count", Value: gguf.Uint32(uint32(p.Original))},
		{Key: "mka.layout", Value: gguf.Strings(layout)},
	}
	if len(lambdas) > 0 {
		kvs = append(kvs, gguf.KV{Key: "mka.lambdas", Value: gguf.Float32s(lambdas)})
	}
	kvs = append(kvs, gguf.KV{Key: "mka.align.method", Value: gguf.String(r.AlignMethod)})
	if r.AlignMethod != "none" && len(r.Steps) > 0 {
		var res []float32
		var rho float32
		tokens := 0
		for _, st := range r.Steps {
			res = append(res, float32(st.Residual))
			rho, tokens = float32(st.Rho), max(tokens, st.Tokens)
		}
		kvs = append(kvs,
			gguf.KV{Key: "mka.align.residuals", Value: gguf.Float32s(res)},
			gguf.KV{Key: "mka.align.rho", Value: gguf.Float32(rho)},
			gguf.KV{Key: "mka.align.tokens", Value: gguf.Uint32(uint32(tokens))})
	}
	return kvs
}

// Write rewrites IN without what r removed to out through a temporary file
// beside it, checks (with verify) that llama.cpp loads and decodes the
// temporary file, and only then renames it to out. meta is recorded in the
// file (Provenance).
func (j *Job) Write(ctx context.Context, r *Result, out string, meta []gguf.KV, verify bool) error {
	p := r.Plan
	total := OutputSize(j.file, j.blocks, p)
	if err := files.CheckSpace(out, total); err != nil {
		return err
	}
	return WriteVerified(ctx, out, "written", len(p.Layout), verify, j.o.Load, func(tmp string) error {
		bar := progress.New("write", int(total>>20)+1, "MiB")
		defer bar.Done()
		opt := RewriteOptions{Norms: j.o.Norms.rule(), Metadata: meta, Align: r.Align, Replace: r.Replace,
			Progress: func(done, _ int64) { bar.Set(int(done>>20), "") }}
		// The folds run on the product the search folded with in memory
		// (pipeline.Editor.UseProduct), so that the file is that model.
		if prod, err := cgo.NewProduct(j.o.Threads); err == nil {
			defer prod.Close()
			opt.Product = prod.Compute
		}
		return Rewrite(ctx, j.file, j.blocks, p, tmp, opt)
	})
}

// WriteVerified builds out through a temporary file beside it
// (files.Build): produce writes the file and, with verify, llama.cpp
// (loading with mp) must load it with the given block count and decode
// before it is renamed to out. what names the output in the error of a
// failed check ("written", "quantized").
func WriteVerified(ctx context.Context, out, what string, blocks int, verify bool, mp cgo.ModelParams, produce func(tmp string) error) error {
	var check func(tmp string) error
	if verify {
		check = func(tmp string) error {
			if err := verifyModel(tmp, blocks, mp); err != nil {
				return fmt.Errorf("%s: the %s model failed the llama.cpp check: %w", out, what, err)
			}
			return nil
		}
	}
	return files.Build(ctx, out, produce, check)
}

// verifyModel loads path with llama.cpp, checks its block count, decodes a
// few tokens and checks the logits are finite.
func verifyModel(path string, blocks int, mp cgo.ModelParams) error {
	m, err := cgo.LoadModel(path, mp)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.NLayer() != blocks {
		return fmt.Errorf("llama.cpp sees %d blocks, want %d", m.NLayer(), blocks)
	}
	toks, err := m.Tokenize("Once upon a time, there was a", m.AddBOS(), false)
	if err != nil {
		return err
	}
	ok := true
	_, err = runner.Run(m, [][]int32{toks}, runner.Options{Threads: 1, Logits: true}, func(d *runner.Decoded) error {
		for k := range toks {
			for _, v := range d.Logits(0, k) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					ok = false
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("non-finite logits")
	}
	return nil
}

// writeQuantized fuses into a temporary F32/F16 GGUF beside out, computes
// an importance matrix (from the merged or the original model), quantizes
// with llama.cpp's quantizer into another temporary file, checks it with
// llama.cpp and renames it to out. Temporary files are removed on success,
// error and Ctrl-C. It records the type, the importance matrix's source
// and the bits per weight in rep.
func (j *Job) writeQuantized(ctx context.Context, r *Result, out string, meta []gguf.KV, rep *Report) error {
	o := &j.o
	p := r.Plan
	ft, err := quant.Parse(o.Quant)
	if err != nil {
		return err
	}
	from := o.ImatrixFrom
	fused := files.TempBeside(out, "mka-fused")
	defer os.Remove(fused)
	stages := 3
	if from == ImatrixNone {
		stages = 2
	}
	progress.Printf("[1/%d] merge: %d -> %d blocks\n", stages, p.Original, len(p.Layout))
	if err := j.Write(ctx, r, fused, meta, false); err != nil {
		return err
	}
	var imat map[string][]float32
	if from != ImatrixNone {
		src := fused
		if from == ImatrixOriginal {
			src = o.In
		}
		progress.Printf("[2/%d] importance matrix from the %s model\n", stages, from)
		if imat, err = j.imatrix(ctx, src); err != nil {
			return err
		}
		rep.Imatrix = string(from)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	progress.Printf("[%d/%d] quantize: %s with llama.cpp's quantizer (importance matrix: %s)\n", stages, stages, ft.Name, from)
	if err := WriteVerified(ctx, out, "quantized", len(p.Layout), o.Verify, o.Load, func(tmp string) error {
		return quant.File(fused, tmp, ft, quant.Options{Threads: o.Threads, Imatrix: imat})
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

// imatrix computes the importance matrix of the model at path on the
// calibration text.
func (j *Job) imatrix(ctx context.Context, path string) (map[string][]float32, error) {
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
	return im.Values(), nil
}
