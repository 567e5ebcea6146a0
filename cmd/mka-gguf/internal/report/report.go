// Package report is the one JSON schema of every command's --json and
// --json-file (docs/json.md): the parts every report shares, named once
// here, so that the same thing has the same name everywhere.
//
//	mka_gguf_version, command        every report (Head)
//	input, input_sha256              the model (or text) a command reads (In)
//	output, output_sha256            the file it writes (Out)
//	quant                            a file type name: F16, Q4_K_M, ...
//	calibration {path, samples, ...} the calibration text and how much of it
//	quality {text, ppl, ...}         perplexity, and KL divergence against base
//
// Field names are snake_case; steps are numbered from 1 as printed.
package report

import (
	"math"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/corpus"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/kld"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/ppl"
)

// Head starts every report: the tool's version and the command.
type Head struct {
	Version string `json:"mka_gguf_version"`
	Command string `json:"command"`
}

// In is the file a command reads and its SHA-256.
type In struct {
	Input       string `json:"input"`
	InputSHA256 string `json:"input_sha256,omitempty"`
}

// Out is the file a command writes and its SHA-256 (empty in a dry run).
type Out struct {
	Output       string `json:"output,omitempty"`
	OutputSHA256 string `json:"output_sha256,omitempty"`
}

// BuiltIn is Calibration.Path for the built-in calibration set.
const BuiltIn = "built-in"

// Calibration is the calibration text of a command and how much of it was
// decoded.
type Calibration struct {
	Path      string  `json:"path"` // the --calib file, or "built-in"
	Samples   int     `json:"samples"`
	Ctx       int     `json:"ctx"`    // tokens per sample
	Tokens    int     `json:"tokens"` // tokens decoded
	Seed      uint64  `json:"seed"`
	Seconds   float64 `json:"seconds,omitempty"`
	TokPerSec float64 `json:"tok_per_s,omitempty"`
}

// CalibPath is Calibration.Path of a calibration source name (a file, or
// corpus.DefaultName).
func CalibPath(source string) string {
	if source == "" || source == corpus.DefaultName {
		return BuiltIn
	}
	return source
}

// FromCalib is the Calibration of a calibration pass over source.
func FromCalib(source string, r *calib.Result) *Calibration {
	if r == nil {
		return nil
	}
	return &Calibration{Path: CalibPath(source), Samples: r.Samples, Ctx: r.Ctx, Tokens: r.Tokens, Seed: r.Seed,
		Seconds: r.Seconds, TokPerSec: r.TokPerSec}
}

// Quality is a model's perplexity on Text and, against a base model (Base),
// the KL divergence figures; every report puts it at "quality", with or
// without a base. With one, the fields of kld.Summary follow inline (its
// ppl, ppl_stderr and tokens are the ones here).
type Quality struct {
	Text   string  `json:"text"`           // what was scored
	Base   string  `json:"base,omitempty"` // the reference model of the KL divergence
	Tokens int     `json:"tokens"`         // tokens scored
	PPL    float64 `json:"ppl"`
	PPLErr float64 `json:"ppl_stderr"`
	NLL    float64 `json:"nll"` // mean loss, nats per token: ln(ppl)
	*kld.Summary
}

// FromPPL is the Quality of a plain perplexity.
func FromPPL(text string, r ppl.Result) *Quality {
	return &Quality{Text: text, Tokens: r.Scored, PPL: r.PPL, PPLErr: r.StdErr, NLL: r.NLL}
}

// FromKLD is the Quality of a comparison with base.
func FromKLD(text, base string, s kld.Summary) *Quality {
	return &Quality{Text: text, Base: base, Tokens: s.Tokens, PPL: s.PPL, PPLErr: s.PPLErr, NLL: math.Log(s.PPL), Summary: &s}
}
