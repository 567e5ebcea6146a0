package cgo

/*
#include "safe.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrException means a llama.cpp call threw a C++ exception. The wrappers
// of safe.cpp catch every exception (one that reached cgo would abort the
// process); the error is then a *CppError, which unwraps to ErrException.
var ErrException = errors.New("llama.cpp threw a C++ exception")

// CppError is a C++ exception that a llama.cpp call threw, caught at the
// cgo boundary.
type CppError struct {
	Call string // the llama.cpp function, e.g. "llama_tokenize"
	Kind string // the exception's type, e.g. "std::out_of_range"
	What string // its what() text (truncated to 511 bytes)
}

func (e *CppError) Error() string {
	if e.What == "" {
		return fmt.Sprintf("%s threw %s", e.Call, e.Kind)
	}
	return fmt.Sprintf("%s threw %s: %s", e.Call, e.Kind, e.What)
}

// Unwrap returns ErrException.
func (e *CppError) Unwrap() error { return ErrException }

// caught returns the *CppError that e records for call, or nil when the
// call did not throw.
func caught(call string, e *C.mka_exc) error {
	if e.thrown == 0 {
		return nil
	}
	return &CppError{Call: call, Kind: C.GoString(&e.kind[0]), What: C.GoString(&e.what[0])}
}

// EncodeError means the text holds a character that the model's vocabulary
// cannot encode: it has no token for it and no byte fallback (no <0xNN>
// byte tokens), so llama.cpp's tokenizer threw std::out_of_range.
type EncodeError struct {
	Model  string // the model file
	Char   string // the character's bytes (one byte when it is not UTF-8)
	Offset int    // its byte offset in the text given to Tokenize
	Err    error  // what llama.cpp threw (a *CppError)
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("cannot encode %s at byte offset %d: the vocabulary of %s has no token for it and no byte fallback",
		describeChar(e.Char), e.Offset, e.Model)
}

// Unwrap returns the exception llama.cpp threw.
func (e *EncodeError) Unwrap() error { return e.Err }

// describeChar names a character as U+00E9 'é' (U+0007 for one that is not
// printable), or a byte that is not UTF-8 as "byte 0xC3 (not UTF-8)".
func describeChar(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		if s == "" {
			return "an empty string"
		}
		return fmt.Sprintf("byte 0x%02X (not UTF-8)", s[0])
	}
	return fmt.Sprintf("%#U", r)
}
