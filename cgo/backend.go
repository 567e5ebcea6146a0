package cgo

/*
#include <stdlib.h>
#include <dlfcn.h>
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "safe.h"

// mka_backend_score dlopens a backend library and calls its
// ggml_backend_score without registering it: -1 when the library has no
// score function, -2 when it cannot be opened.
static int mka_backend_score(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return -2;
	}
	int (*score)(void) = (int (*)(void))dlsym(h, "ggml_backend_score");
	int s = score ? score() : -1;
	dlclose(h);
	return s;
}

static struct ggml_backend_feature *mka_features(ggml_backend_reg_t reg) {
	ggml_backend_get_features_t fn = (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
	return fn ? fn(reg) : NULL;
}
*/
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// Device is one ggml compute device, in the order llama.cpp considers them.
type Device struct {
	Name        string   // ggml's device name, e.g. "CPU" or "CUDA0"
	Description string   // e.g. the CPU brand or the GPU model
	Type        string   // "cpu", "gpu", "igpu" or "accel"
	Backend     string   // the backend (registry) name, e.g. "CPU", "CUDA"
	FreeBytes   uint64   // free memory as the backend reports it
	TotalBytes  uint64   // total memory as the backend reports it
	Features    []string // the backend's compiled features, "NAME=value"
}

// Devices lists ggml's registered devices.
func Devices() []Device {
	Init()
	n := int(C.ggml_backend_dev_count())
	out := make([]Device, 0, n)
	for i := range n {
		d := C.ggml_backend_dev_get(C.size_t(i))
		var free, total C.size_t
		C.ggml_backend_dev_memory(d, &free, &total)
		reg := C.ggml_backend_dev_backend_reg(d)
		out = append(out, Device{
			Name:        C.GoString(C.ggml_backend_dev_name(d)),
			Description: strings.TrimSpace(C.GoString(C.ggml_backend_dev_description(d))),
			Type:        devType(C.ggml_backend_dev_type(d)),
			Backend:     C.GoString(C.ggml_backend_reg_name(reg)),
			FreeBytes:   uint64(free),
			TotalBytes:  uint64(total),
			Features:    regFeatures(reg),
		})
	}
	return out
}

// HasGPU reports whether a GPU device (CUDA, ...) is registered.
func HasGPU() bool {
	Init()
	for i := range int(C.ggml_backend_dev_count()) {
		switch C.ggml_backend_dev_type(C.ggml_backend_dev_get(C.size_t(i))) {
		case C.GGML_BACKEND_DEVICE_TYPE_GPU, C.GGML_BACKEND_DEVICE_TYPE_IGPU:
			return true
		}
	}
	return false
}

func devType(t C.enum_ggml_backend_dev_type) string {
	switch t {
	case C.GGML_BACKEND_DEVICE_TYPE_CPU:
		return "cpu"
	case C.GGML_BACKEND_DEVICE_TYPE_GPU:
		return "gpu"
	case C.GGML_BACKEND_DEVICE_TYPE_IGPU:
		return "igpu"
	case C.GGML_BACKEND_DEVICE_TYPE_ACCEL:
		return "accel"
	}
	return "unknown"
}

func regFeatures(reg C.ggml_backend_reg_t) []string {
	var out []string
	f := C.mka_features(reg)
	if f == nil {
		return nil
	}
	for p := unsafe.Pointer(f); ; p = unsafe.Add(p, unsafe.Sizeof(*f)) {
		e := (*C.struct_ggml_backend_feature)(p)
		if e.name == nil {
			break
		}
		out = append(out, C.GoString(e.name)+"="+C.GoString(e.value))
	}
	return out
}

// BackendScore opens the ggml backend library at path without registering
// it and returns what its ggml_backend_score says: 0 when the library
// cannot run on this machine, higher for better builds. It is ggml's own
// view, used to check the Go-side choice; opening a library built for
// instructions the CPU lacks can itself fault, so only call it on
// libraries the CPU is known to run or in tests.
func BackendScore(path string) (int, error) {
	Init()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	switch s := int(C.mka_backend_score(cpath)); s {
	case -2:
		return 0, fmt.Errorf("%s: cannot open: %s", path, C.GoString(C.dlerror()))
	case -1:
		return 0, fmt.Errorf("%s: not a ggml backend (no ggml_backend_score)", path)
	default:
		return s, nil
	}
}

// LoadBackend loads and registers the ggml backend library at path (a GPU
// backend, or a CPU variant: see LoadCPUBackend) and returns its name.
func LoadBackend(path string) (string, error) {
	reg, err := loadBackend(path)
	if err != nil {
		return "", err
	}
	return C.GoString(C.ggml_backend_reg_name(reg)), nil
}

func loadBackend(path string) (C.ggml_backend_reg_t, error) {
	Init()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	clearErrors()
	var exc C.mka_exc
	reg := C.mka_backend_load(cpath, &exc)
	if err := caught("ggml_backend_load", &exc); err != nil {
		return nil, fmt.Errorf("load backend %s: %w", path, err)
	}
	if reg == nil {
		// ggml says "load_backend: failed to load PATH: PATH: why".
		why := strings.ReplaceAll(llamaReason(), "load_backend: failed to load ", "")
		return nil, fmt.Errorf("load backend %s: %s", path, strings.ReplaceAll(why, path+": ", ""))
	}
	return reg, nil
}

// LoadCPUBackend loads a build of ggml's CPU backend (a variant shipped by
// a portable build) and makes it the only CPU device, so that llama.cpp
// runs on it instead of the CPU code compiled into the binary. Call it
// before loading models. On error the built-in CPU code stays in use.
func LoadCPUBackend(path string) error {
	reg, err := loadBackend(path)
	if err != nil {
		return err
	}
	builtin := C.ggml_backend_cpu_reg()
	if reg == builtin {
		return fmt.Errorf("load CPU backend %s: it resolved to the built-in CPU backend (was the library linked with -Bsymbolic?)", path)
	}
	// The registry sorts devices by score, so the variant already comes
	// first; unloading the built-in one leaves a single CPU device.
	for i := range int(C.ggml_backend_reg_count()) {
		if C.ggml_backend_reg_get(C.size_t(i)) == builtin {
			C.ggml_backend_unload(builtin)
			break
		}
	}
	return nil
}
