package simd

import (
	"fmt"
	"slices"
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// CPUVariant is one build of ggml's CPU backend for a set of x86-64
// features, named as ggml's GGML_CPU_ALL_VARIANTS names them (plus zen4).
// A portable build (cmake -DMKA_PORTABLE=ON) ships each as
// libggml-cpu-<Name>.so beside the binary.
type CPUVariant struct {
	Name     string   // e.g. "haswell"
	Features []string // ggml feature names the code was compiled for
}

// cpuVariants lists the x86-64 variants in the order of ggml's table; the
// feature sets must match CMakeLists.txt.
var cpuVariants = []CPUVariant{
	{"sse42", []string{"SSE42"}},
	{"sandybridge", []string{"SSE42", "AVX"}},
	{"haswell", []string{"SSE42", "AVX", "F16C", "AVX2", "BMI2", "FMA"}},
	{"skylakex", []string{"SSE42", "AVX", "F16C", "AVX2", "BMI2", "FMA", "AVX512"}},
	{"icelake", []string{"SSE42", "AVX", "F16C", "AVX2", "BMI2", "FMA", "AVX512", "AVX512_VBMI", "AVX512_VNNI"}},
	{"zen4", []string{"SSE42", "AVX", "F16C", "AVX2", "BMI2", "FMA", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"}},
	{"alderlake", []string{"SSE42", "AVX", "F16C", "AVX2", "BMI2", "FMA", "AVX_VNNI"}},
}

// ggmlFeature maps a ggml feature name to the cpuid features it needs and
// its weight in ggml's ggml_backend_score (one bit per feature, so a
// variant with a more valuable feature always outranks one without it).
var ggmlFeature = map[string]struct {
	needs []cpuid.FeatureID
	bit   int
}{
	"FMA":         {[]cpuid.FeatureID{cpuid.FMA3}, 0},
	"F16C":        {[]cpuid.FeatureID{cpuid.F16C}, 1},
	"SSE42":       {[]cpuid.FeatureID{cpuid.SSE42}, 2},
	"BMI2":        {[]cpuid.FeatureID{cpuid.BMI2}, 3},
	"AVX":         {[]cpuid.FeatureID{cpuid.AVX}, 4},
	"AVX2":        {[]cpuid.FeatureID{cpuid.AVX2}, 5},
	"AVX_VNNI":    {[]cpuid.FeatureID{cpuid.AVXVNNI}, 6},
	"AVX512":      {[]cpuid.FeatureID{cpuid.AVX512F, cpuid.AVX512CD, cpuid.AVX512VL, cpuid.AVX512DQ, cpuid.AVX512BW}, 7},
	"AVX512_VBMI": {[]cpuid.FeatureID{cpuid.AVX512VBMI}, 8},
	"AVX512_BF16": {[]cpuid.FeatureID{cpuid.AVX512BF16}, 9},
	"AVX512_VNNI": {[]cpuid.FeatureID{cpuid.AVX512VNNI}, 10},
}

// CPUVariants returns the variants a portable build can ship, in ggml's
// order (not ranked).
func CPUVariants() []CPUVariant { return slices.Clone(cpuVariants) }

// LookupCPUVariant returns the variant called name.
func LookupCPUVariant(name string) (CPUVariant, bool) {
	for _, v := range cpuVariants {
		if v.Name == name {
			return v, true
		}
	}
	return CPUVariant{}, false
}

// Score ranks the variant as ggml's own ggml_backend_score does: 1 plus one
// bit per feature. It does not look at the CPU.
func (v CPUVariant) Score() int {
	s := 1
	for _, f := range v.Features {
		s += 1 << ggmlFeature[f].bit
	}
	return s
}

// Missing returns the ggml features of v that the running CPU lacks, as
// cpuid reports them (and as the OS enables them: cpuid checks XSAVE state
// for AVX and AVX-512). It returns nil when the CPU can run v.
func (v CPUVariant) Missing() []string {
	var miss []string
	for _, f := range v.Features {
		if !hasFeature(f) {
			miss = append(miss, f)
		}
	}
	return miss
}

// hasFeature reports whether the running CPU has the ggml feature f.
func hasFeature(f string) bool { return cpuid.CPU.Supports(ggmlFeature[f].needs...) }

// GGMLFeatures returns the ggml feature names of the variants that the
// running CPU has, in the order the variant table first uses them.
func GGMLFeatures() []string {
	var out []string
	for _, v := range cpuVariants {
		for _, f := range v.Features {
			if !slices.Contains(out, f) && hasFeature(f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// CPUVariantEnv names the environment variable that forces a CPU variant:
// a variant name, "builtin" for the code compiled into the binary, or
// "auto" (the default) for the best one this CPU supports.
const CPUVariantEnv = "MKA_CPU_VARIANT"

// Builtin is the name used for the ggml CPU code compiled into the binary
// (baseline x86-64 in a portable build, the build machine's CPU otherwise).
const Builtin = "builtin"

// VariantChoice is the outcome of ChooseCPUVariants.
type VariantChoice struct {
	// Try lists the variants to load, best first; when none loads, the
	// built-in code is used. Empty means use the built-in code.
	Try []CPUVariant
	// Forced is true when CPUVariantEnv named a variant.
	Forced bool
	// Skipped says, for each shipped variant not in Try, why not.
	Skipped map[string]string
}

// ChooseCPUVariants ranks the shipped variants (by name, e.g. from the
// libggml-cpu-*.so files found) for the running CPU: those whose features
// the CPU has, by descending Score. force is the value of CPUVariantEnv
// ("" or "auto" chooses; "builtin" loads none; a name forces that variant
// and fails when it is not shipped or the CPU lacks one of its features,
// rather than crash on an illegal instruction).
func ChooseCPUVariants(shipped []string, force string) (VariantChoice, error) {
	ch := VariantChoice{Skipped: map[string]string{}}
	force = strings.ToLower(strings.TrimSpace(force))
	switch force {
	case "", "auto":
	case Builtin:
		ch.Forced = true
		for _, name := range shipped {
			ch.Skipped[name] = "forced " + Builtin
		}
		return ch, nil
	default:
		v, ok := LookupCPUVariant(force)
		if !ok {
			return ch, fmt.Errorf("cpu variant %q: unknown (known: %s, %s, auto)", force, strings.Join(variantNames(), ", "), Builtin)
		}
		if !slices.Contains(shipped, force) {
			return ch, fmt.Errorf("cpu variant %q: libggml-cpu-%s.so is not installed beside the binary (a portable build ships the variants)", force, force)
		}
		if miss := v.Missing(); len(miss) > 0 {
			return ch, fmt.Errorf("cpu variant %q: this CPU lacks %s", force, strings.Join(miss, ", "))
		}
		ch.Forced = true
		ch.Try = []CPUVariant{v}
		for _, name := range shipped {
			if name != force {
				ch.Skipped[name] = "forced " + force
			}
		}
		return ch, nil
	}
	for _, name := range shipped {
		v, ok := LookupCPUVariant(name)
		if !ok {
			ch.Skipped[name] = "unknown variant"
			continue
		}
		if miss := v.Missing(); len(miss) > 0 {
			ch.Skipped[name] = "CPU lacks " + strings.Join(miss, ", ")
			continue
		}
		ch.Try = append(ch.Try, v)
	}
	slices.SortStableFunc(ch.Try, func(a, b CPUVariant) int { return b.Score() - a.Score() })
	return ch, nil
}

func variantNames() []string {
	names := make([]string, len(cpuVariants))
	for i, v := range cpuVariants {
		names[i] = v.Name
	}
	return names
}
