package shrink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Metadata returns the keys the job's output of r records beside IN's:
// general.name updated (MergedName) and the mka.* provenance.
func (j *Job) Metadata(r *Result, srcSHA string) []gguf.KV {
	name, _ := j.file.String("general.name")
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(j.o.In), ".gguf")
	}
	kvs := []gguf.KV{{Key: "general.name", Value: gguf.String(MergedName(name, r.Plan.Removed()))}}
	return append(kvs, Provenance(r, j.o.Version, srcSHA)...)
}

// MergedName is general.name of a model with removed of IN's blocks
// removed: "<IN's name> (mka -<removed>)".
func MergedName(name string, removed int) string {
	return fmt.Sprintf("%s (mka -%d)", name, removed)
}

// Provenance returns the mka.* keys recorded in the output of r: the tool
// version, the method, IN's SHA-256 (srcSHA) and block count, the layout,
// the fusion weights, the alignment and the blocks the healing stage
// refitted.
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
	if h := r.Heal; h != nil {
		var kept []int32 // output blocks whose ffn_down the healing stage refitted
		for _, st := range h.Refits {
			if st.Kept {
				kept = append(kept, int32(st.Block))
			}
		}
		if len(kept) > 0 {
			kvs = append(kvs,
				gguf.KV{Key: "mka.heal.blocks", Value: gguf.Int32s(kept)},
				gguf.KV{Key: "mka.heal.rho", Value: gguf.Float32(float32(h.Rho))})
		}
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
		mib := func(n int64) int { return int((n + 1<<20 - 1) >> 20) } // rounded up: the last byte is 100 %
		bar := progress.New("write", mib(total), "MiB")
		defer bar.Done()
		opt := RewriteOptions{Norms: j.o.Norms.rule(), Metadata: meta, Align: r.Align, Replace: r.Replace,
			Progress: func(done, _ int64) { bar.Set(min(mib(done), mib(total)), "") }}
		// The folds run on the product the search folded with in memory
		// (pipeline.Editor.UseProduct), so that the file is that model.
		if prod, err := cgo.NewProduct(j.o.Threads); err == nil {
			defer prod.Close()
			opt.Product = prod.Compute
		}
		if err := Rewrite(ctx, j.file, j.blocks, p, tmp, opt); err != nil {
			return err
		}
		bar.Finish()
		return nil
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
