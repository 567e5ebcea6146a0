// Package edit applies block edits to a model's weights, each written once:
// the Tensor of an output block, fold_T(Σ_k w_k θ_k) (a copy, a λ-fusion of
// blocks, an alignment folded in, or zero for a block made an identity),
// and Rewrite, which streams a GGUF file through a merge.Plan and its
// alignments chunk by chunk. mka-gguf's in-memory search computes its edits
// with the same Tensor over the loaded model's bytes, so that the file it
// writes is the model it scored, bit for bit.
//
// Which tensors an edit touches is the architecture's row (package arch).
// Tensor data is converted by a Codec: FloatCodec for F32, F16 and BF16;
// quantized types need ggml's, which callers inject (this package does not
// import cgo). Errors are returned, never panics, for anything a file or a
// plan can cause.
package edit
