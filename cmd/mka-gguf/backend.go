package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/simd"
)

// backendDirEnv names the environment variable that overrides where the
// loadable ggml backends (CPU variants, CUDA) are looked for.
const backendDirEnv = "MKA_BACKEND_DIR"

// backendSetup records which ggml backends this process loaded and why;
// env prints it.
type backendSetup struct {
	Dir       string            `json:"dir"`                  // where libraries were looked for
	Shipped   []string          `json:"shipped"`              // CPU variants found there
	CPU       string            `json:"cpu_variant"`          // the variant in use, or "builtin"
	Reason    string            `json:"reason"`               // why that one
	Forced    bool              `json:"forced"`               // chosen by --cpu-variant / MKA_CPU_VARIANT
	Skipped   map[string]string `json:"skipped,omitempty"`    // variant -> why it was not used
	GPU       []string          `json:"gpu,omitempty"`        // GPU backends loaded
	GPUErrors []string          `json:"gpu_errors,omitempty"` // GPU libraries that failed to load
}

// backends is what setupBackends did; main sets it before any command runs.
var backends *backendSetup

// backendDirs returns the folders searched for backend libraries: the
// override, else the binary's own folder and ../lib/mka-gguf from it.
func backendDirs() []string {
	if d := os.Getenv(backendDirEnv); d != "" {
		return []string{d}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	dir := filepath.Dir(exe)
	return []string{dir, filepath.Join(dir, "..", "lib", "mka-gguf")}
}

// setupBackends loads the GPU backends and the best CPU variant shipped
// beside the binary (a portable build); main calls it once, before any
// command. force is --cpu-variant or MKA_CPU_VARIANT. A plain build ships
// no libraries and keeps the CPU code compiled into it.
func setupBackends(force string) (*backendSetup, error) {
	s := &backendSetup{CPU: simd.Builtin}
	var dir string
	for _, d := range backendDirs() {
		if m, _ := filepath.Glob(filepath.Join(d, "libggml-*.so")); len(m) > 0 {
			dir = d
			break
		}
	}
	s.Dir = dir
	if dir != "" {
		gpus, _ := filepath.Glob(filepath.Join(dir, "libggml-cuda*.so"))
		for _, lib := range gpus {
			if name, err := cgo.LoadBackend(lib); err != nil {
				s.GPUErrors = append(s.GPUErrors, err.Error())
			} else {
				s.GPU = append(s.GPU, name)
			}
		}
		cpus, _ := filepath.Glob(filepath.Join(dir, "libggml-cpu-*.so"))
		for _, lib := range cpus {
			name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(lib), "libggml-cpu-"), ".so")
			s.Shipped = append(s.Shipped, name)
		}
		slices.Sort(s.Shipped)
	}
	choice, err := simd.ChooseCPUVariants(s.Shipped, force)
	if err != nil {
		return nil, err
	}
	s.Forced, s.Skipped = choice.Forced, choice.Skipped
	for i, v := range choice.Try {
		lib := filepath.Join(dir, "libggml-cpu-"+v.Name+".so")
		if err := cgo.LoadCPUBackend(lib); err != nil {
			if choice.Forced {
				return nil, fmt.Errorf("--cpu-variant %s: %w", v.Name, err)
			}
			s.Skipped[v.Name] = "failed to load: " + err.Error()
			continue
		}
		s.CPU = v.Name
		if choice.Forced {
			s.Reason = "forced"
		} else {
			s.Reason = fmt.Sprintf("best of %d shipped variants this CPU runs (ggml score %d: %s)",
				len(choice.Try), v.Score(), strings.Join(v.Features, " "))
		}
		for _, w := range choice.Try[i+1:] {
			s.Skipped[w.Name] = fmt.Sprintf("lower score %d", w.Score())
		}
		break
	}
	if s.CPU == simd.Builtin {
		switch {
		case choice.Forced:
			s.Reason = "forced"
		case len(s.Shipped) == 0:
			s.Reason = "no CPU variants shipped (a native build: its built-in code targets the build machine)"
		case len(choice.Try) > 0:
			s.Reason = "no shipped variant could be loaded; using the baseline x86-64 code"
		default:
			s.Reason = "no shipped variant runs on this CPU; using the baseline x86-64 code"
		}
	}
	if len(s.Skipped) == 0 {
		s.Skipped = nil
	}
	return s, nil
}

// gpuLayers is the --gpu-layers value: -1 offloads every layer when a GPU
// backend is loaded.
var gpuLayers = -1

// noMmap is --no-mmap: models are read into memory instead of mapped.
var noMmap bool

// modelParams returns the cgo.ModelParams every command loads models with.
func modelParams() cgo.ModelParams {
	n := gpuLayers
	if n < 0 {
		n = 0
		if cgo.HasGPU() {
			n = 999
		}
	}
	return cgo.ModelParams{GPULayers: n, NoMmap: noMmap}
}
