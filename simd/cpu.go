package simd

import (
	"fmt"
	"os"
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// Features is a snapshot of the CPU features relevant to this package, as
// reported by cpuid.CPU (after any [Disable] calls). Under the noasm build
// tag cpuid reports no features, so every field is false.
type Features struct {
	AVX2       bool   // 256-bit integer SIMD
	FMA        bool   // fused multiply-add (cpuid FMA3)
	F16C       bool   // half-precision conversions (VCVTPH2PS, VCVTPS2PH)
	AVX512F    bool   // AVX-512 foundation
	AVX512BW   bool   // AVX-512 byte and word instructions
	AVX512VL   bool   // AVX-512 vector-length extensions
	AVX512BF16 bool   // AVX-512 BFLOAT16 (reported only; not used, see F32ToBF16)
	AVX512FP16 bool   // AVX-512 FP16 arithmetic (reported only)
	NEON       bool   // arm64 Advanced SIMD (reported only; no arm64 kernels yet)
	Level      int    // x86-64 microarchitecture level 0-4 (cpuid X64Level)
	Brand      string // CPU brand string, e.g. "AMD EPYC 9654 96-Core Processor"
}

// Detect reports the features of the running CPU as cpuid sees them now,
// that is after any [Disable] calls.
func Detect() Features {
	c := &cpuid.CPU
	return Features{
		AVX2:       c.Supports(cpuid.AVX2),
		FMA:        c.Supports(cpuid.FMA3),
		F16C:       c.Supports(cpuid.F16C),
		AVX512F:    c.Supports(cpuid.AVX512F),
		AVX512BW:   c.Supports(cpuid.AVX512BW),
		AVX512VL:   c.Supports(cpuid.AVX512VL),
		AVX512BF16: c.Supports(cpuid.AVX512BF16),
		AVX512FP16: c.Supports(cpuid.AVX512FP16),
		NEON:       c.Supports(cpuid.ASIMD),
		Level:      c.X64Level(),
		Brand:      strings.TrimSpace(c.BrandName),
	}
}

// level is a kernel implementation tier. Higher levels include the lower.
type level int

const (
	levelGeneric level = iota // pure Go
	levelAVX2                 // AVX2 + FMA3 + F16C
	levelAVX512               // levelAVX2 + AVX512F + AVX512BW + AVX512VL
)

func (l level) String() string {
	switch l {
	case levelAVX2:
		return "avx2"
	case levelAVX512:
		return "avx512"
	}
	return "generic"
}

// EnvVar names the environment variable read once at package
// initialisation to cap the kernel level: "generic" (pure Go), "avx2" or
// "avx512". The CPU's own level still applies, so MKA_SIMD=avx512 on an
// AVX2-only machine selects avx2. Unset, empty or unknown values mean no
// cap (unknown values are named by [Describe]).
const EnvVar = "MKA_SIMD"

var (
	envCap   = levelAVX512 // from MKA_SIMD
	envValue string        // raw MKA_SIMD value, for Describe
	envBad   bool          // MKA_SIMD was set to an unknown value
	hookCap  = levelAVX512 // from DisableAVX2 / DisableAVX512
	active   level         // the level selectKernels chose
)

func init() {
	envValue = strings.TrimSpace(os.Getenv(EnvVar))
	if envValue != "" {
		if l, ok := parseLevel(envValue); ok {
			envCap = l
		} else {
			envBad = true
		}
	}
	selectKernels()
}

func parseLevel(s string) (level, bool) {
	switch strings.ToLower(s) {
	case "generic", "go", "purego", "noasm":
		return levelGeneric, true
	case "avx2":
		return levelAVX2, true
	case "avx512":
		return levelAVX512, true
	}
	return levelGeneric, false
}

// cpuLevel is the highest level the CPU (as cpuid reports it now) and the
// build support.
func cpuLevel() level {
	if !haveAsm {
		return levelGeneric
	}
	c := &cpuid.CPU
	if !c.Supports(cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
		return levelGeneric
	}
	if !c.Supports(cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VL) {
		return levelAVX2
	}
	return levelAVX512
}

// selectKernels points every kernel's func var at the best implementation
// allowed by the CPU, MKA_SIMD and the test hooks. It is the only place
// kernels are chosen; it runs from init and again after Disable and the
// test hooks.
func selectKernels() {
	active = min(cpuLevel(), envCap, hookCap)
	selectHalf(active)
	selectBF16(active)
	selectAxpy(active)
	selectDot(active)
	selectSumExp(active)
}

// kernel identifies one dispatched kernel, for Kernels and Speedup.
type kernel int

const (
	kF16ToF32 kernel = iota
	kF32ToF16
	kBF16ToF32
	kF32ToBF16
	kLerp
	kAxpy
	kDot
	kSqDist
	kSumExp
	numKernels
)

var kernelNames = [numKernels]string{
	kF16ToF32:  "F16ToF32",
	kF32ToF16:  "F32ToF16",
	kBF16ToF32: "BF16ToF32",
	kF32ToBF16: "F32ToBF16",
	kLerp:      "Lerp",
	kAxpy:      "Axpy",
	kDot:       "Dot",
	kSqDist:    "SqDist",
	kSumExp:    "SumExp",
}

// kernelImpl names the implementation each kernel uses now; the select
// functions fill it.
var kernelImpl [numKernels]string

// Kernels names the implementation chosen for each kernel, space separated,
// e.g. "F16ToF32=avx512 F32ToF16=avx512 ... SqDist=avx512".
func Kernels() string {
	var sb strings.Builder
	for k := range numKernels {
		if k > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(kernelNames[k])
		sb.WriteByte('=')
		sb.WriteString(kernelImpl[k])
	}
	return sb.String()
}

// Describe summarises the selected level for a version line, e.g.
// "avx512 (AVX512F+BW+VL, F16C, FMA) on AMD EPYC 9654 96-Core Processor",
// "avx2 (AVX2, F16C, FMA) on ..." or "pure Go". A cap from MKA_SIMD is
// mentioned, as is an MKA_SIMD value that was not understood.
func Describe() string {
	var s string
	switch active {
	case levelAVX512:
		s = "avx512 (AVX512F+BW+VL, F16C, FMA)"
	case levelAVX2:
		s = "avx2 (AVX2, F16C, FMA)"
	default:
		s = "pure Go"
	}
	switch {
	case envBad:
		s += fmt.Sprintf(" [%s=%q ignored]", EnvVar, envValue)
	case envCap < cpuLevel() && envCap == active:
		s += fmt.Sprintf(" [forced by %s=%s]", EnvVar, envValue)
	}
	if active != levelGeneric {
		if b := strings.TrimSpace(cpuid.CPU.BrandName); b != "" {
			s += " on " + b
		}
	}
	return s
}

// Disable turns off the named cpuid features (names as cpuid.ParseFeature
// accepts them, case-insensitive: "AVX512F", "avx2", "FMA3", "F16C", ...)
// in the process-wide cpuid.CPU and re-selects the kernels, e.g. for a
// --cpu-disable flag. If any name is unknown it returns an error and
// disables nothing. Disabling is permanent for the process.
//
// Disable must not run concurrently with any kernel or with itself.
func Disable(names ...string) error {
	ids := make([]cpuid.FeatureID, 0, len(names))
	for _, n := range names {
		id := cpuid.ParseFeature(strings.TrimSpace(n))
		if id == cpuid.UNKNOWN {
			return fmt.Errorf("simd: unknown CPU feature %q", n)
		}
		ids = append(ids, id)
	}
	cpuid.CPU.Disable(ids...)
	selectKernels()
	return nil
}

// capLevel caps the kernel level at l until the returned func runs.
func capLevel(l level) (restore func()) {
	old := hookCap
	hookCap = l
	selectKernels()
	return func() {
		hookCap = old
		selectKernels()
	}
}

// DisableAVX512 is a test hook: it makes the kernels fall back to the AVX2
// versions (or generic, if the CPU lacks AVX2) until restore is called.
// Typical use: defer simd.DisableAVX512()(). Not safe for concurrent use
// with the kernels.
func DisableAVX512() (restore func()) { return capLevel(levelAVX2) }

// DisableAVX2 is a test hook: it makes every kernel use the generic Go
// version until restore is called. Typical use: defer simd.DisableAVX2()().
// Not safe for concurrent use with the kernels.
func DisableAVX2() (restore func()) { return capLevel(levelGeneric) }

// lengthMismatch is the panic value of every kernel given slices of
// different lengths.
const lengthMismatch = "simd: length mismatch"
