// Package cgo is mka-gguf's thin binding to ggml and llama.cpp, and the only
// package of the project that contains C.
//
// The C sources come from the Go module github.com/ollama/ollama (the
// packages ml/backend/ggml/ggml/src and llama/llama.cpp/src, whose cgo
// compiles ggml's base and CPU backends and llama.cpp's core). This package
// includes llama.h and ggml.h from that module, so the build must pass their
// folders in CGO_CPPFLAGS; the Makefile and CMakeLists.txt do that, and also
// set -O3 -march=native (llama.cpp's GGML_NATIVE default) unless a portable
// build is asked for.
//
// The API is small: Init; LoadModel / Model.Close; tokenization; NewContext /
// Context.Close; Batch and Context.Decode with per-token output flags;
// Context.Logits; a capture hook (ContextParams.Capture) that hands every
// block output "l_out-<i>" (and the block-0 input "inp_embd") to Go as float32
// rows during the decode; Dequantize / Quantize for rows of any ggml type; and
// QuantizeFile, llama.cpp's own file quantizer.
//
// The merge search also decodes only some of the blocks
// (Context.DecodeLayers, DecodeFrom: resume.cpp), edits weights in place
// (Model.Weight) and computes XᵀX, XᵀY and Tᵀ W on ggml's CPU device (Gram,
// Product).
//
// All ggml CPU work of the process runs on one persistent thread pool per
// thread count (pool.c), one graph at a time (a Gram inside a capture hook
// nests between two of the decode's graphs): decodes of any number of
// contexts and goroutines are taken one at a time.
//
// Context.SetAbort stops a decode in progress when a Go context is done
// (llama.cpp's abort callback reading a flag that the cancellation sets).
//
// No C++ exception crosses cgo (one that did would abort the process):
// every llama.cpp call that can throw (model load, context creation,
// tokenize, detokenize, decode, the quantizer, loading a
// backend library) goes through a wrapper in safe.cpp that catches
// everything, and the Go side returns a *CppError (errors.Is ErrException)
// with the exception's type and what() text; for text a vocabulary without
// byte fallback cannot encode, Tokenize returns an *EncodeError naming the
// character. (ggml's GGML_ASSERT calls abort() instead of throwing; that
// cannot be caught.)
//
// Every type that owns C memory has a nil-safe, idempotent Close. Nothing is
// freed by finalizers: Close is the contract.
package cgo
