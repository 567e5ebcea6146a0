package gguf

import "errors"

// Errors returned by Open, wrapped with the file name and the place of the
// problem. Test for them with errors.Is.
var (
	// ErrBadMagic means the file does not start with the GGUF magic "GGUF".
	ErrBadMagic = errors.New("gguf: bad magic")
	// ErrUnsupportedVersion means a GGUF version other than 2 or 3 (version 1
	// used 32-bit counts and is obsolete), or a big-endian file.
	ErrUnsupportedVersion = errors.New("gguf: unsupported version")
	// ErrTruncated means the file ends before the end of a structure it
	// declares: the header, a key, a value, a tensor info, the padding before
	// the data, or tensor data laid out as a writer lays it out.
	ErrTruncated = errors.New("gguf: truncated")
	// ErrUnknownType means a tensor type id that ggml does not define (or has
	// removed, such as 4, Q4_2) or a metadata value type outside the 13 known.
	ErrUnknownType = errors.New("gguf: unknown type")
	// ErrCorrupt means a value no valid file holds: a count or length beyond
	// any real file, arrays nested too deep, a bool that is not 0 or 1, a
	// duplicate key or tensor name, dims outside 1..4 or zero, a row size not
	// a multiple of the block size, a size that overflows, a bad
	// general.alignment, a misaligned tensor offset, tensor data outside the
	// file where the layout is not a writer's, or overlapping tensors.
	ErrCorrupt = errors.New("gguf: corrupt")
)
