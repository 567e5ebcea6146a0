package calib

import (
	"context"
	"fmt"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/runner"
	"github.com/mka-gguf/mka-gguf/quant"
)

// Imatrix decodes the chunks (all of one length, several per decode as
// separate sequences, every token asking for output so that output.weight
// sees all of them) and accumulates the inputs of every weight
// multiplication: llama.cpp's importance matrix.
func Imatrix(ctx context.Context, m *cgo.Model, chunks [][]int32, threads, batchTokens int) (*quant.Imatrix, error) {
	im := quant.NewImatrix()
	if len(chunks) == 0 {
		return im, nil
	}
	bar := progress.New("imatrix", len(chunks), "chunks")
	defer bar.Done()
	_, err := runner.Run(m, chunks, runner.Options{Ctx: ctx, Threads: threads, BatchTokens: batchTokens,
		MatMulInputs: func(w string, cols, rows int, data []float32) bool {
			im.Add(w, cols, rows, data)
			return true
		},
		Progress: func(done int, tps float64) { bar.Set(done, fmt.Sprintf("%.0f tok/s", tps)) },
	}, func(d *runner.Decoded) error {
		im.Chunks += d.Count
		return nil
	})
	if err != nil {
		return nil, err
	}
	im.ChunkSize = len(chunks[0])
	return im, nil
}
