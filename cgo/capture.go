package cgo

// Tensor is one captured graph tensor: Rows token rows of Cols floats.
// Layer is the decoder block whose output it is ("l_out-<Layer>"), or -1
// for the input of block 0 (CaptureNames.Input); with Kind FFNInput it is
// the residual stream of block Layer before its FFN ("ffn_inp-<Layer>"),
// with Kind FFNOutput the FFN's contribution to it. Data aliases memory
// owned by llama.cpp and is valid only during the CaptureFunc call: copy
// what you keep.
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
	// FFNOutput is the FFN's contribution to block i's stream in a graph
	// that leaves the stream before the FFN unnamed (phi3's "ffn_out-<i>"):
	// that stream is then l_out-<i> minus it.
	FFNOutput
)

// CaptureNames are the graph names (llama.cpp's cb names, "<name>-<i>"
// for block i) a capture hook reports; they differ between
// architectures' graphs (merge/arch's table lists them). Empty fields
// take llama's names.
type CaptureNames struct {
	// Input is block 0's input ("inp_embd"; gemma's graphs scale it and
	// name the result "inp_scaled").
	Input string
	// FFNInput is the prefix of the residual stream before block i's FFN
	// ("ffn_inp-"; gemma's "sa_out-").
	FFNInput string
	// FFNOutput, when set without FFNInput, is the prefix of the FFN's
	// contribution to the stream, captured instead where the graph leaves
	// that stream unnamed (phi3: "ffn_out-").
	FFNOutput string
}

// names returns the names with llama's defaults filled in.
func (n CaptureNames) names() (input, ffnInput, ffnOutput string) {
	input, ffnInput = n.Input, n.FFNInput
	if input == "" {
		input = "inp_embd"
	}
	if ffnInput == "" && n.FFNOutput == "" {
		ffnInput = "ffn_inp-"
	}
	return input, ffnInput, n.FFNOutput
}

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
