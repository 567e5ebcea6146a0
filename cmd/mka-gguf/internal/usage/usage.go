// Package usage is the error of a refused command line: an option out of
// range, a choice that does not exist, options that do not go together. The
// libraries' Validate methods return it, naming options by their flags; the
// command line adds the command and its help ("merge: --ctx 0 is out of
// range: … (see mka-gguf merge --help)").
package usage

import (
	"fmt"
	"slices"
	"strings"
)

// Error is a refused option or command line.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

// Errorf returns an *Error.
func Errorf(format string, args ...any) error {
	return &Error{fmt.Sprintf(format, args...)}
}

// AtLeast refuses an integer option below min: "--ctx 0 is out of range:
// want an integer ≥ 8 (tokens)".
func AtLeast(name string, v, min int, what string) error {
	if v >= min {
		return nil
	}
	return Errorf("--%s %d is out of range: want an integer ≥ %d (%s)", name, v, min, what)
}

// Choice parses the value v of the choice option name: one of values, or
// an *Error listing them (`--rep "first" is not one of mean, last`).
func Choice[T ~string](name, v string, values []T) (T, error) {
	if i := slices.Index(values, T(v)); i >= 0 {
		return values[i], nil
	}
	names := make([]string, len(values))
	for i, x := range values {
		names[i] = string(x)
	}
	return "", Errorf("--%s %q is not one of %s", name, v, strings.Join(names, ", "))
}
