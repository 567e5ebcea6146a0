//go:build !amd64 || noasm || !gc

package simd

// haveAsm reports whether this build contains the assembly kernels.
const haveAsm = false
