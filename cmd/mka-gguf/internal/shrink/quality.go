package shrink

import (
	"fmt"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/progress"
)

// The closing quality check: OUT's KL divergence from IN on held-back
// calibration text (or calibration text when the method holds none back).

// qualityChunks returns the chunks the closing quality check scores: the
// held-back calibration chunks of the search, or else 8 chunks of the
// calibration text drawn with another seed.
func (j *Job) qualityChunks(m *cgo.Model) ([][]int32, error) {
	if len(j.held) > 0 {
		return j.held, nil
	}
	c := j.o.Calib
	tx, source, err := c.Texts()
	if err != nil {
		return nil, err
	}
	chunks, err := calib.Tokens(m, tx, 8, min(c.Ctx, m.NCtxTrain()), c.Seed+1)
	if err != nil {
		return nil, fmt.Errorf("%s: quality check: %w", source, err)
	}
	return chunks, nil
}

// qualityText names the text of the quality check.
func (j *Job) qualityText() string {
	if len(j.held) > 0 {
		return "held-back calibration text"
	}
	return "calibration text"
}

// keepReference decodes the quality check's chunks with IN (j.model, as the
// file holds it) and keeps IN's distributions in memory, then closes IN, so
// that IN and OUT are never loaded together (peak memory).
func (j *Job) keepReference() error {
	chunks, err := j.qualityChunks(j.model)
	if err != nil {
		return err
	}
	bar := progress.New("quality check: IN's distributions", len(chunks), "chunks")
	j.ref, err = kld.NewReference(j.model, chunks, kld.Options{Context: j.ctx, Threads: j.o.Threads, BatchTokens: j.o.Calib.Batch,
		TopK: referenceTopK(j.model.NVocab()), Progress: func(done, _ int) { bar.Set(done, "") }})
	bar.Done()
	if err != nil {
		return err
	}
	j.model.Close()
	j.model = nil
	return nil
}

// quality returns the KL divergence of the model at path (OUT's temporary
// file) from IN, on qualityChunks, every position scored: against the
// reference kept by keepReference, or else decoding IN alongside.
func (j *Job) quality(path string) (kld.Summary, error) {
	out, err := cgo.LoadModel(path, j.o.Load)
	if err != nil {
		return kld.Summary{}, err
	}
	defer out.Close()
	opt := kld.Options{Context: j.ctx, Threads: j.o.Threads, BatchTokens: j.o.Calib.Batch}
	if j.ref != nil {
		return kld.CompareReference(j.ref, out, opt)
	}
	base := j.model
	if base == nil {
		m, err := cgo.LoadModel(j.o.In, j.o.Load)
		if err != nil {
			return kld.Summary{}, err
		}
		defer m.Close()
		base = m
	}
	chunks, err := j.qualityChunks(base)
	if err != nil {
		return kld.Summary{}, err
	}
	return kld.Compare(base, out, chunks, opt)
}
