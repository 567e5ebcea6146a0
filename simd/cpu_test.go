package simd

import (
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/cpuid/v2"
)

func TestDetect(t *testing.T) {
	f := Detect()
	if f.AVX2 != cpuid.CPU.Supports(cpuid.AVX2) || f.Level != cpuid.CPU.X64Level() {
		t.Errorf("Detect() = %+v disagrees with cpuid", f)
	}
	if (cpuLevel() >= levelAVX2) != (f.AVX2 && f.FMA && f.F16C) {
		t.Errorf("cpuLevel %v but features %+v", cpuLevel(), f)
	}
	if (cpuLevel() == levelAVX512) != (f.AVX2 && f.FMA && f.F16C && f.AVX512F && f.AVX512BW && f.AVX512VL) {
		t.Errorf("cpuLevel %v but features %+v", cpuLevel(), f)
	}
	t.Logf("Detect: %+v", f)
	t.Logf("Describe: %s", Describe())
	t.Logf("Kernels: %s", Kernels())
}

func TestDescribeKernels(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		d, k := Describe(), Kernels()
		want := map[level]string{levelGeneric: "pure Go", levelAVX2: "avx2 (", levelAVX512: "avx512 ("}[active]
		if !strings.HasPrefix(d, want) {
			t.Errorf("Describe() = %q, want prefix %q", d, want)
		}
		for _, name := range kernelNames {
			if !strings.Contains(k, name+"="+active.String()) {
				t.Errorf("Kernels() = %q lacks %s=%v", k, name, active)
			}
		}
	})
}

func TestHooks(t *testing.T) {
	top := active
	r1 := DisableAVX512()
	if active > levelAVX2 {
		t.Errorf("after DisableAVX512 level %v", active)
	}
	r2 := DisableAVX2()
	if active != levelGeneric || Describe() != "pure Go" {
		t.Errorf("after DisableAVX2 level %v, Describe %q", active, Describe())
	}
	r2()
	if active != min(top, levelAVX2) {
		t.Errorf("after first restore level %v", active)
	}
	r1()
	if active != top {
		t.Errorf("after restores level %v, want %v", active, top)
	}
}

func TestDisable(t *testing.T) {
	if err := Disable("AVX2", "no-such-feature"); err == nil || !strings.Contains(err.Error(), "no-such-feature") {
		t.Fatalf("Disable(unknown) = %v, want error naming it", err)
	}
	if !cpuid.CPU.Supports(cpuid.AVX2) {
		t.Skip("AVX2 absent: nothing to disable")
	}
	// Disable is process-wide; put cpuid back afterwards.
	had512 := cpuid.CPU.Supports(cpuid.AVX512F)
	defer func() {
		cpuid.CPU.Enable(cpuid.AVX2)
		if had512 {
			cpuid.CPU.Enable(cpuid.AVX512F)
		}
		selectKernels()
	}()
	if had512 {
		if err := Disable("avx512f"); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(Kernels(), "avx512") || Detect().AVX512F {
			t.Errorf("after Disable(avx512f): %s, %+v", Kernels(), Detect())
		}
	}
	if err := Disable("AVX2"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(Kernels(), "avx") || Describe() != "pure Go" {
		t.Errorf("after Disable(AVX2): %s; %s", Kernels(), Describe())
	}
}

func TestParseLevel(t *testing.T) {
	for s, want := range map[string]level{"generic": levelGeneric, "AVX2": levelAVX2, "avx512": levelAVX512, "purego": levelGeneric} {
		if l, ok := parseLevel(s); !ok || l != want {
			t.Errorf("parseLevel(%q) = %v, %v", s, l, ok)
		}
	}
	if _, ok := parseLevel("sse9"); ok {
		t.Error("parseLevel(sse9) ok")
	}
}

// TestEnvVar runs this test binary with MKA_SIMD set and checks what the
// child's init selected.
func TestEnvVar(t *testing.T) {
	if os.Getenv("MKA_SIMD_CHILD") != "" {
		os.Stdout.WriteString("KERNELS " + Kernels() + "\nDESCRIBE " + Describe() + "\n")
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, c := range []struct{ env, impl, describe string }{
		{"generic", "generic", "pure Go"},
		{"avx2", min(cpuLevel(), levelAVX2).String(), ""},
		{"bogus", cpuLevel().String(), `MKA_SIMD="bogus" ignored`},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvVar$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MKA_SIMD_CHILD=1", EnvVar+"="+c.env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s=%s: %v\n%s", EnvVar, c.env, err, out)
		}
		s := string(out)
		if !strings.Contains(s, "Dot="+c.impl+" ") || !strings.Contains(s, c.describe) {
			t.Errorf("%s=%s: want Dot=%s and %q in\n%s", EnvVar, c.env, c.impl, c.describe, s)
		}
	}
}

func TestSpeedup(t *testing.T) {
	if Speedup("NoSuchKernel", 64) != 0 || Speedup("Dot", 0) != 0 {
		t.Error("Speedup of unknown kernel or n=0 not 0")
	}
	if testing.Short() {
		t.Skip("timing")
	}
	s := Speedup("F32ToF16", 4096)
	t.Logf("F32ToF16 speedup at 4096: %.2fx (%s)", s, Describe())
	if !(s > 0) || math.IsInf(s, 0) {
		t.Errorf("Speedup = %g", s)
	}
}

// TestExhaustiveF32 compares the selected conversions with the generic ones
// on all 2^32 float32 bit patterns at every level. It takes about a
// minute, so it runs only with MKA_SIMD_EXHAUSTIVE=1.
func TestExhaustiveF32(t *testing.T) {
	if os.Getenv("MKA_SIMD_EXHAUSTIVE") == "" {
		t.Skip("set MKA_SIMD_EXHAUSTIVE=1 to check all 2^32 float32 values")
	}
	const chunk = 1 << 20
	src := make([]float32, chunk)
	got, want := make([]uint16, chunk), make([]uint16, chunk)
	forEachLevel(t, func(t *testing.T) {
		if active == levelGeneric {
			t.Skip("generic vs itself")
		}
		for base := uint64(0); base < 1<<32; base += chunk {
			for i := range src {
				src[i] = math.Float32frombits(uint32(base) + uint32(i))
			}
			for _, k := range []struct {
				name     string
				sel, gen func([]uint16, []float32)
			}{{"F32ToF16", F32ToF16, f32ToF16Generic}, {"F32ToBF16", F32ToBF16, f32ToBF16Generic}} {
				k.sel(got, src)
				k.gen(want, src)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("%s(%#08x) = %#04x, want %#04x", k.name, math.Float32bits(src[i]), got[i], want[i])
					}
				}
			}
		}
	})
}
