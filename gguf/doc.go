// Package gguf reads and writes GGUF files, the model format of llama.cpp and
// ggml, versions 2 and 3, little-endian.
//
// # Reading
//
// Open parses the header, metadata and tensor infos with its own bounded
// parser and checks every structural rule before returning: counts and
// lengths against the bytes left in the file, known tensor types, dims,
// size overflow, alignment, tensors inside the file and not overlapping,
// unique names and keys. It never allocates by an untrusted count. Tensor
// data is not loaded: TensorReader returns an io.SectionReader over the open
// file and TensorBytes a read-only memory mapping.
//
// Metadata keeps its exact wire types (a Value records its ValueType), and
// KVs and tensors keep file order, so a file that is opened and written back
// unchanged is byte-identical to the original when the original was written
// with the standard layout (llama.cpp, gguf-py and this package all use it).
//
// # Errors
//
// Every error from Open names the file and wraps one of ErrBadMagic,
// ErrUnsupportedVersion, ErrTruncated, ErrUnknownType or ErrCorrupt (or an
// *os.PathError when the file cannot be opened), on one line, for example
//
//	model.gguf: gguf: truncated: tensor info 3 of 291 (name): unexpected EOF
//
// # Writing
//
// Write streams a header, metadata, tensor infos and tensor data to an
// io.Writer with the layout of ggml's gguf writer: tensor offsets are
// relative to the data section and aligned to general.alignment (default
// 32), and padding bytes are zero. Tensor data comes from an io.WriterTo per
// tensor and is never buffered whole, so memory does not grow with the model.
// WriteFile and CreateAtomic write through a temporary file that is renamed
// into place only when everything succeeded. File.Edit starts from an open
// file and copies untouched tensors as raw bytes.
//
// # gguf-parser-go
//
// File.Summary cross-checks and enriches a file with
// github.com/gpustack/gguf-parser-go (parameter count, bits per weight,
// architecture and tokenizer facts). That library is read-only, drops
// split.no and panics on some malformed files, so it is only called on files
// this package has already accepted, behind a recover.
package gguf
