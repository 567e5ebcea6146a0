package gguf

import (
	"fmt"
	"io"
	"slices"
)

// Edit is a set of changes to an open File, written out as a new file by
// WriteFile. It starts as an exact copy: the same version, KVs and tensors
// in the same order, untouched tensors copied as raw bytes from the source
// file (which must stay open until the write is done). An Edit is not safe
// for concurrent use.
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

// KVs returns a copy of the metadata as it will be written.
func (e *Edit) KVs() []KV { return slices.Clone(e.kvs) }

// Tensors returns a copy of the tensors as they will be written.
func (e *Edit) Tensors() []OutTensor { return slices.Clone(e.tensors) }

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

// DeleteKV removes key and reports whether it was there.
func (e *Edit) DeleteKV(key string) bool {
	n := len(e.kvs)
	e.kvs = slices.DeleteFunc(e.kvs, func(kv KV) bool { return kv.Key == key })
	return len(e.kvs) != n
}

func (e *Edit) index(name string) int {
	return slices.IndexFunc(e.tensors, func(t OutTensor) bool { return t.Info.Name == name })
}

// DropTensor removes the named tensor.
func (e *Edit) DropTensor(name string) error {
	i := e.index(name)
	if i < 0 {
		return fmt.Errorf("gguf: edit: no tensor %q", name)
	}
	e.tensors = slices.Delete(e.tensors, i, i+1)
	return nil
}

// RenameTensor renames a tensor, keeping its place and data.
func (e *Edit) RenameTensor(old, name string) error {
	i := e.index(old)
	if i < 0 {
		return fmt.Errorf("gguf: edit: no tensor %q", old)
	}
	if old != name && e.index(name) >= 0 {
		return fmt.Errorf("gguf: edit: rename %q: tensor %q exists", old, name)
	}
	e.tensors[i].Info.Name = name
	return nil
}

// AddTensor appends a tensor whose data src writes (exactly info.Size()
// bytes). info.Offset is ignored.
func (e *Edit) AddTensor(info TensorInfo, src io.WriterTo) error {
	if e.index(info.Name) >= 0 {
		return fmt.Errorf("gguf: edit: add: tensor %q exists", info.Name)
	}
	e.tensors = append(e.tensors, OutTensor{Info: info, Src: src})
	return nil
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

// SetTensorOrder reorders the tensors to the given names, which must name
// every tensor exactly once.
func (e *Edit) SetTensorOrder(names []string) error {
	if len(names) != len(e.tensors) {
		return fmt.Errorf("gguf: edit: order names %d tensors, have %d", len(names), len(e.tensors))
	}
	pos := make(map[string]int, len(e.tensors))
	for i, t := range e.tensors {
		pos[t.Info.Name] = i
	}
	out := make([]OutTensor, 0, len(names))
	for _, n := range names {
		i, ok := pos[n]
		if !ok {
			return fmt.Errorf("gguf: edit: order: no tensor %q, or named twice", n)
		}
		delete(pos, n)
		out = append(out, e.tensors[i])
	}
	e.tensors = out
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
