package cgo

// Tensor is one captured graph tensor: Rows token rows of Cols floats.
// Layer is the decoder block whose output it is ("l_out-<Layer>"), or -1
// for the input of block 0 ("inp_embd"); with Kind FFNInput it is the
// residual stream of block Layer before its FFN ("ffn_inp-<Layer>"). Data
// aliases memory owned by llama.cpp and is valid only during the
// CaptureFunc call: copy what you keep.
type Tensor struct {
	Layer      int
	Kind       TensorKind
	Rows, Cols int
	Data       []float32
}

// TensorKind says which graph tensor of a block was captured.
type TensorKind int

const (
	// BlockOutput is a block's output "l_out-<i>" (or the block-0 input).
	BlockOutput TensorKind = iota
	// FFNInput is "ffn_inp-<i>": the residual stream after block i's
	// attention, before its FFN. Block i's FFN output is then
	// l_out-<i> − ffn_inp-<i>.
	FFNInput
)

// CaptureFunc receives captured tensors in graph order during Decode. The
// rows are the batch's tokens in batch order (the last block's rows only
// for tokens that asked for output, so ask for output on every token you
// want to see). Returning false stops the current graph split early;
// the caller should record why and report it after Decode.
type CaptureFunc func(t Tensor) bool

// MatMulFunc receives the input of one multiplication by the weight named
// weight: rows activation rows of cols floats (cols is the weight's ne0),
// row-major. data aliases memory owned by llama.cpp and is valid only during
// the call: copy what you keep. Returning false makes llama.cpp skip the
// rest of the current graph split (it does not report an error), so the
// decode's results are then meaningless; return true normally.
type MatMulFunc func(weight string, cols, rows int, data []float32) bool
