package gguf

import (
	"fmt"
	"io"
	"slices"
)

// Edit is a set of changes to an open File (metadata set, tensors
// replaced), written out as a new file by WriteFile. It starts as an exact
// copy: the same version, KVs and tensors in the same order, untouched
// tensors copied as raw bytes from the source file (which must stay open
// until the write is done). An Edit is not safe for concurrent use.
type Edit struct {
	version uint32
	kvs     []KV
	tensors []OutTensor
}

// Edit starts an edit of f.
func (f *File) Edit() *Edit {
	e := &Edit{version: f.Version, kvs: slices.Clone(f.KVs)}
	e.tensors = make([]OutTensor, len(f.Tensors))
	for i := range f.Tensors {
		e.tensors[i] = f.OutTensor(i)
	}
	return e
}

// SetKV replaces the value of kv.Key in place, or appends kv if the key is
// new.
func (e *Edit) SetKV(kv KV) {
	for i := range e.kvs {
		if e.kvs[i].Key == kv.Key {
			e.kvs[i] = kv
			return
		}
	}
	e.kvs = append(e.kvs, kv)
}

func (e *Edit) index(name string) int {
	return slices.IndexFunc(e.tensors, func(t OutTensor) bool { return t.Info.Name == name })
}

// ReplaceTensor puts a new info and source in the place of the named
// tensor; info.Name may differ from name if no other tensor has it.
func (e *Edit) ReplaceTensor(name string, info TensorInfo, src io.WriterTo) error {
	i := e.index(name)
	if i < 0 {
		return fmt.Errorf("gguf: edit: no tensor %q", name)
	}
	if j := e.index(info.Name); j >= 0 && j != i {
		return fmt.Errorf("gguf: edit: replace %q: tensor %q exists", name, info.Name)
	}
	e.tensors[i] = OutTensor{Info: info, Src: src}
	return nil
}

// Write writes the edited file to w (see the package function Write).
func (e *Edit) Write(w io.Writer) error {
	return Write(w, e.version, e.kvs, 0, e.tensors)
}

// WriteFile writes the edited file to path atomically (see WriteFile). The
// path may be the source file's own path.
func (e *Edit) WriteFile(path string) error {
	return WriteFile(path, e.version, e.kvs, 0, e.tensors)
}
