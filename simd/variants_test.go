package simd

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/cpuid/v2"
)

// TestCPUVariantsMatchCMake checks that the Go table has the feature sets
// CMakeLists.txt compiles the variants with (set(_<name> ...) lines, where
// ${_<other>} expands another variant's set).
func TestCPUVariantsMatchCMake(t *testing.T) {
	b, err := os.ReadFile("../CMakeLists.txt")
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*set\(_([a-z0-9]+)\s+([^)]*)\)`).FindAllStringSubmatch(string(b), -1) {
		var feats []string
		for _, f := range strings.Fields(m[2]) {
			if ref, ok := strings.CutPrefix(f, "${_"); ok {
				feats = append(feats, sets[strings.TrimSuffix(ref, "}")]...)
			} else {
				feats = append(feats, f)
			}
		}
		sets[m[1]] = feats
	}
	def := regexp.MustCompile(`MKA_CPU_VARIANTS "([^"]*)"`).FindStringSubmatch(string(b))
	if def == nil {
		t.Fatal("no MKA_CPU_VARIANTS default in CMakeLists.txt")
	}
	built := strings.Split(def[1], ";")
	for _, v := range CPUVariants() {
		if !slices.Contains(built, v.Name) {
			t.Errorf("%s: not built by default (MKA_CPU_VARIANTS %v)", v.Name, built)
		}
		want := slices.Sorted(slices.Values(sets[v.Name]))
		got := slices.Sorted(slices.Values(v.Features))
		if !slices.Equal(got, want) {
			t.Errorf("%s: Go features %v, CMakeLists.txt %v", v.Name, got, want)
		}
		for _, f := range v.Features {
			if _, ok := ggmlFeature[f]; !ok {
				t.Errorf("%s: feature %s has no cpuid mapping", v.Name, f)
			}
		}
	}
	if len(built) != len(CPUVariants()) {
		t.Errorf("CMake builds %v, Go knows %d variants", built, len(CPUVariants()))
	}
}

// TestScoreOrder checks ggml's ranking: every variant outranks the ones
// whose features are a strict subset of its own.
func TestScoreOrder(t *testing.T) {
	for _, a := range CPUVariants() {
		for _, b := range CPUVariants() {
			sub := len(b.Features) < len(a.Features)
			for _, f := range b.Features {
				sub = sub && slices.Contains(a.Features, f)
			}
			if sub && a.Score() <= b.Score() {
				t.Errorf("%s (score %d) does not outrank its subset %s (%d)", a.Name, a.Score(), b.Name, b.Score())
			}
		}
	}
	if v, _ := LookupCPUVariant("skylakex"); v.Score() <= mustVariant(t, "alderlake").Score() {
		t.Errorf("AVX-512 must outrank AVX-VNNI, as in ggml")
	}
}

func mustVariant(t *testing.T, name string) CPUVariant {
	t.Helper()
	v, ok := LookupCPUVariant(name)
	if !ok {
		t.Fatalf("no variant %s", name)
	}
	return v
}

// withoutFeatures runs f with cpuid reporting the given features absent.
func withoutFeatures(t *testing.T, ids []cpuid.FeatureID, f func()) {
	t.Helper()
	var had []cpuid.FeatureID
	for _, id := range ids {
		if cpuid.CPU.Supports(id) {
			had = append(had, id)
		}
	}
	cpuid.CPU.Disable(ids...)
	defer cpuid.CPU.Enable(had...)
	f()
}

func TestChooseCPUVariants(t *testing.T) {
	all := []string{"sse42", "sandybridge", "haswell", "skylakex", "icelake", "zen4", "alderlake", "future"}
	if !cpuid.CPU.Supports(cpuid.SSE42, cpuid.AVX, cpuid.AVX2, cpuid.FMA3, cpuid.F16C, cpuid.BMI2) {
		t.Skip("needs an AVX2 CPU to simulate the others by disabling features")
	}
	names := func(vs []CPUVariant) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.Name)
		}
		return out
	}
	// An AVX2 CPU without AVX-512 or AVX-VNNI: haswell first, then the
	// older ones; AVX-512 variants skipped with the reason.
	withoutFeatures(t, []cpuid.FeatureID{cpuid.AVX512F, cpuid.AVXVNNI}, func() {
		ch, err := ChooseCPUVariants(all, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := names(ch.Try); !slices.Equal(got, []string{"haswell", "sandybridge", "sse42"}) {
			t.Errorf("AVX2 CPU: try %v", got)
		}
		if !strings.Contains(ch.Skipped["zen4"], "AVX512") || ch.Skipped["future"] != "unknown variant" {
			t.Errorf("skipped %v", ch.Skipped)
		}
		if _, err := ChooseCPUVariants(all, "icelake"); err == nil || !strings.Contains(err.Error(), "lacks AVX512") {
			t.Errorf("forcing icelake on an AVX2 CPU: %v", err)
		}
		// Only the libraries found are candidates.
		ch, _ = ChooseCPUVariants([]string{"sse42", "zen4"}, "auto")
		if got := names(ch.Try); !slices.Equal(got, []string{"sse42"}) {
			t.Errorf("sse42+zen4 shipped: try %v", got)
		}
	})
	// An AVX2 CPU with AVX-VNNI but no AVX-512 (Alder Lake).
	withoutFeatures(t, []cpuid.FeatureID{cpuid.AVX512F}, func() {
		if !cpuid.CPU.Supports(cpuid.AVXVNNI) {
			return
		}
		ch, _ := ChooseCPUVariants(all, "")
		if len(ch.Try) == 0 || ch.Try[0].Name != "alderlake" {
			t.Errorf("Alder Lake: try %v", names(ch.Try))
		}
	})
	// A CPU without AVX: only sse42.
	withoutFeatures(t, []cpuid.FeatureID{cpuid.AVX}, func() {
		ch, _ := ChooseCPUVariants(all, "")
		if got := names(ch.Try); !slices.Equal(got, []string{"sse42"}) {
			t.Errorf("no-AVX CPU: try %v", got)
		}
	})
	ch, err := ChooseCPUVariants(all, "BuiltIn")
	if err != nil || len(ch.Try) != 0 || !ch.Forced {
		t.Errorf("builtin: %+v, %v", ch, err)
	}
	if _, err := ChooseCPUVariants([]string{"sse42"}, "haswell"); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("forcing a variant not shipped: %v", err)
	}
	if _, err := ChooseCPUVariants(all, "486"); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown variant: %v", err)
	}
	if ch, _ := ChooseCPUVariants(nil, ""); len(ch.Try) != 0 {
		t.Errorf("nothing shipped: %+v", ch)
	}
}
