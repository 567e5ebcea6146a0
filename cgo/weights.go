package cgo

/*
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-backend.h"
#include "weights.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Weight is one weight tensor of a loaded model, as llama.cpp holds it in
// its backend buffers (CPU or GPU). Set replaces the tensor's data between
// decodes, so that one loaded model can be edited, scored and restored
// without writing a file, whether the model was read into memory
// (ModelParams.NoMmap) or memory-mapped.
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

// privateWeight is a weight of a memory-mapped model that Set gave a
// writable buffer of its own (buf), with what the tensor pointed at
// before: its bytes in the file's mapping and the mapping's buffer.
type privateWeight struct {
	buf, mapped C.ggml_backend_buffer_t
	data        unsafe.Pointer
	bytes       int
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
// bytes in the weight's own type (GGUF's layout). It must not run during
// a decode; the next decode computes with data.
//
// Writable buffers (a model loaded with NoMmap, a GPU's buffers, CPU
// buffers that repack weights for faster kernels) take data in place
// (ggml_backend_tensor_set; a repacking buffer repacks it on the way in).
// A memory-mapped model's CPU weights live in the file's read-only
// mapping: the first Set of such a weight gives it a private buffer (its
// size, once) and points llama.cpp's tensor at it; a later Set of the
// file's own bytes points the tensor back at the mapping and frees the
// buffer. So only edited weights take private memory (PrivateBytes).
func (w *Weight) Set(data []byte) error {
	m := w.model
	if m.p == nil {
		return ErrClosed
	}
	if len(data) != w.Bytes() {
		return fmt.Errorf("%s: %s: set %d bytes, the tensor holds %d", m.path, w.Name, len(data), w.Bytes())
	}
	if w.t.buffer == nil {
		return fmt.Errorf("%s: %s: the tensor has no backend buffer", m.path, w.Name)
	}
	src := unsafe.Pointer(unsafe.SliceData(data))
	n := C.size_t(len(data))
	if p := m.private[w.t]; p != nil {
		if C.memcmp(p.data, src, n) == 0 {
			C.mka_weight_disown(w.t, p.data, p.mapped)
			delete(m.private, w.t)
			m.privateBytes -= p.bytes
			return nil
		}
	} else if C.mka_weight_mapped(w.t) {
		if C.memcmp(w.t.data, src, n) == 0 {
			return nil // the file's bytes already
		}
		p := &privateWeight{mapped: w.t.buffer, data: w.t.data, bytes: len(data)}
		if p.buf = C.mka_weight_own(w.t, src); p.buf == nil {
			return fmt.Errorf("%s: %s: no memory for a private copy of %d bytes", m.path, w.Name, len(data))
		}
		if m.private == nil {
			m.private = map[*C.struct_ggml_tensor]*privateWeight{}
		}
		m.private[w.t] = p
		m.privateBytes += p.bytes
		return nil
	}
	C.ggml_backend_tensor_set(w.t, src, 0, n)
	return nil
}

// PrivateBytes returns the bytes of the private buffers that Set gave
// weights of a memory-mapped model (0 for a model loaded with NoMmap).
func (m *Model) PrivateBytes() int64 { return int64(m.privateBytes) }

// freePrivate points every weight with a private buffer back at the
// file's mapping and frees the buffers.
func (m *Model) freePrivate() {
	for t, p := range m.private {
		C.mka_weight_disown(t, p.data, p.mapped)
	}
	m.private, m.privateBytes = nil, 0
}

// Readable reports whether Get can read the weight back: its buffer is
// ggml's plain CPU buffer, the file's mapping or a device's own (GPU)
// buffer. CPU buffers that repack weights for faster kernels (CPU_REPACK,
// AMX) hold them in another layout and cannot give GGUF's bytes back; the
// project's builds compile neither (no GGML_USE_CPU_REPACK), so on the CPU
// every weight is in a plain or a mapped buffer.
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
		return fmt.Errorf("%s: %s: the weight's buffer (%s) cannot be read back", w.model.path, w.Name, w.bufferName())
	}
	C.ggml_backend_tensor_get(w.t, unsafe.Pointer(unsafe.SliceData(dst)), 0, C.size_t(len(dst)))
	return nil
}

// bufferName names the weight's buffer type ("CPU", "CPU_Mapped", ...).
func (w *Weight) bufferName() string { return C.GoString(C.mka_weight_buffer_name(w.t)) }
