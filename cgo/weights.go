package cgo

/*
#include <stdlib.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "weights.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// ErrReadOnly means a weight of a memory-mapped model was to be written:
// load with ModelParams.NoMmap to edit weights.
var ErrReadOnly = errors.New("weights are read-only (memory-mapped); load with NoMmap to edit them")

// Weight is one weight tensor of a loaded model, as llama.cpp holds it in
// its backend buffers (CPU or GPU). A model loaded with NoMmap has writable
// buffers: Set replaces the tensor's data between decodes, so that one
// loaded model can be edited, scored and restored without writing a file.
type Weight struct {
	t     *C.struct_ggml_tensor
	model *Model
	// Name is the GGUF tensor name ("blk.3.ffn_down.weight").
	Name string
	// Type is the ggml type id (the GGUF tensor type).
	Type int
	// Dims are the element counts, ne0 first (ne0 is the row length).
	Dims []int
}

// Bytes returns the size of the tensor's data in its own type.
func (w *Weight) Bytes() int { return int(C.ggml_nbytes(w.t)) }

// Elements returns the number of elements.
func (w *Weight) Elements() int { return int(C.ggml_nelements(w.t)) }

// Weight returns the loaded weight named name (GGUF's name). The error
// names the model and the tensor when it is absent.
func (m *Model) Weight(name string) (*Weight, error) {
	if m == nil || m.p == nil {
		return nil, ErrClosed
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	t := C.mka_model_tensor(m.p, cn)
	if t == nil {
		return nil, fmt.Errorf("%s: no loaded weight %q", m.path, name)
	}
	w := &Weight{t: t, model: m, Name: name, Type: int(t._type)}
	for i := 0; i < int(C.ggml_n_dims(t)); i++ {
		w.Dims = append(w.Dims, int(t.ne[i]))
	}
	return w, nil
}

// Set replaces the weight's data with data, which holds exactly Bytes()
// bytes in the weight's own type (GGUF's layout). It works on CPU and GPU
// buffers alike (ggml_backend_tensor_set; a CPU buffer that repacks
// weights for faster kernels repacks data on the way in). It must not run
// during a decode. A memory-mapped model's weights are read-only
// (ErrReadOnly).
func (w *Weight) Set(data []byte) error {
	if w.model.p == nil {
		return ErrClosed
	}
	if !w.model.writable {
		return fmt.Errorf("%s: %s: %w", w.model.path, w.Name, ErrReadOnly)
	}
	if len(data) != w.Bytes() {
		return fmt.Errorf("%s: %s: set %d bytes, the tensor holds %d", w.model.path, w.Name, len(data), w.Bytes())
	}
	if w.t.buffer == nil {
		return fmt.Errorf("%s: %s: the tensor has no backend buffer", w.model.path, w.Name)
	}
	C.ggml_backend_tensor_set(w.t, unsafe.Pointer(unsafe.SliceData(data)), 0, C.size_t(len(data)))
	return nil
}

// Readable reports whether Get can read the weight back: its buffer is
// ggml's plain CPU buffer or a device's own (GPU) buffer. CPU buffers that
// repack weights for faster kernels (CPU_REPACK, AMX) hold them in another
// layout and cannot give GGUF's bytes back.
func (w *Weight) Readable() bool {
	return w.model.p != nil && bool(C.mka_weight_readable(w.t))
}

// Get copies the weight's data, in its own type (GGUF's layout), into dst,
// which holds exactly Bytes() bytes (ggml_backend_tensor_get, CPU or GPU).
// It must not run during a decode.
func (w *Weight) Get(dst []byte) error {
	if w.model.p == nil {
		return ErrClosed
	}
	if len(dst) != w.Bytes() {
		return fmt.Errorf("%s: %s: get %d bytes, the tensor holds %d", w.model.path, w.Name, len(dst), w.Bytes())
	}
	if !w.Readable() {
		return fmt.Errorf("%s: %s: the weight's buffer (%s) cannot be read back", w.model.path, w.Name, C.GoString(C.mka_weight_buffer_name(w.t)))
	}
	C.ggml_backend_tensor_get(w.t, unsafe.Pointer(unsafe.SliceData(dst)), 0, C.size_t(len(dst)))
	return nil
}
