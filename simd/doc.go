// Package simd holds the vector kernels of mka-gguf: half and bfloat16
// conversions, blends and reductions over float32, with AVX2 and AVX-512
// assembly chosen at run time and pure-Go versions everywhere else.
//
// # Kernels
//
// Every exported kernel calls through a package-level func var:
//
//	F16ToF32, F32ToF16    IEEE binary16 <-> float32, round to nearest even
//	BF16ToF32, F32ToBF16  bfloat16 <-> float32, ggml's GGML_FP32_TO_BF16 rule
//	Lerp, Axpy            dst = lambda*a + (1-lambda)*b; dst += alpha*x
//	Dot, SqDist           sum a*b; sum (a-b)^2, float32 accumulation
//	SumExp                sum exp(x-m) in float64, in order (log-sum-exp)
//
// The conversions, Lerp, Axpy and SumExp give the same bits in every
// implementation (apart from which NaN payload an arithmetic NaN carries),
// so results never depend on the machine. Dot and SqDist accumulate in
// several float32 lanes and differ between implementations in the last
// bits. All kernels take any length, handle unaligned slices, and panic
// with "simd: length mismatch" when their slices' lengths differ.
//
// # Selection
//
// At init, selectKernels picks one level for all kernels from cpuid
// (github.com/klauspost/cpuid/v2):
//
//	avx512   AVX2, FMA3, F16C, AVX512F, AVX512BW, AVX512VL
//	avx2     AVX2, FMA3, F16C
//	generic  pure Go (any CPU, or the noasm build tag)
//
// [Describe] summarises the choice for a version line and [Kernels] names
// each kernel's implementation; [Detect] reports the CPU features. The
// level can be lowered, never raised above what the CPU supports:
//
//   - the environment variable MKA_SIMD=generic|avx2|avx512, read once at
//     init ([EnvVar]);
//   - [Disable] ("--cpu-disable avx512f"), which turns cpuid features off
//     process-wide and selects again;
//   - the test hooks [DisableAVX512] and [DisableAVX2], which return a
//     restore func (defer simd.DisableAVX2()()).
//
// Selection is not synchronised: change it only when no kernel is running.
//
// # Builds
//
// The assembly is in *_amd64.s files built with amd64 && !noasm && gc;
// the pure-Go kernels (*_generic.go) are always compiled so that tests and
// benchmarks can compare against them, and *_other.go selects them when the
// assembly is excluded. Build with -tags noasm to get pure Go everywhere.
// [Speedup] and BenchmarkKernels time the selected implementation against
// the generic one in the same process.
package simd
