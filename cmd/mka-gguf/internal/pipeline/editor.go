package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
	"github.com/mka-gguf/mka-gguf/merge/edit"
)

// Editor edits a loaded model (cgo.Weight.Set: mapped, in private buffers).
// Blocks are "current" blocks (after the steps taken so far); phys maps each
// to the loaded block that computes it, the others being zeroed (identity).
// Changes are tentative until Commit; Restore undoes them. Every change is
// an edit.Tensor over the tensor's current bytes, the computation of the
// streaming rewrite (edit.Rewrite), and touches the tensors the
// architecture's row names (arch.Row.Identity, Fold).
type Editor struct {
	m     *cgo.Model
	f     *gguf.File
	arch  *arch.Model
	codec edit.Codec
	phys  []int

	// The committed state of an edited tensor lives in one place: in the
	// loaded model only (inModel, read back with cgo.Weight.Get, so that
	// no copy is kept per edited block), as bytes (committed, for weights
	// whose buffers cannot be read back), or as "all zeros" (zeroed).
	committed map[string][]byte
	inModel   map[string]bool
	zeroed    map[string]bool
	pending   map[string][]byte // set since the last Commit or Restore
	pendZero  map[string]bool   // pending tensors set to zero by Drop
	pendDrop  map[int]bool      // loaded blocks made identities by a pending Drop
	backup    map[string][]byte // committed bytes of inModel tensors, read before their first pending set
	keepBytes bool              // keep committed edits as bytes even when readable (tests the fallback)
	product   *cgo.Product      // the folds' products on ggml's CPU device (nil: gonum)
}

// UseProduct makes the folds (W ← Tᵀ W) run on ggml's CPU device with the
// given threads, about 10× gonum's pure-Go product for a 1536 × 4096
// ffn_down; when the device cannot start, they stay in Go. Close frees it.
func (e *Editor) UseProduct(threads int) {
	if e.product == nil {
		e.product, _ = cgo.NewProduct(threads)
	}
}

// Close frees what UseProduct started. The model stays as it is.
func (e *Editor) Close() {
	e.product.Close()
	e.product = nil
}

// NewEditor checks that every block has the tensors an in-memory edit needs
// and returns an editor of m, which must have been loaded from f.
func NewEditor(m *cgo.Model, f *gguf.File, b *arch.Model, codec edit.Codec) (*Editor, error) {
	if m.NLayer() != b.Count {
		return nil, fmt.Errorf("%s: llama.cpp sees %d blocks, the file has %d", f.Path, m.NLayer(), b.Count)
	}
	if s := b.Missing(b.Arch.Identity); s != "" {
		return nil, fmt.Errorf("%s: %w: architecture %q has no blk.0.%s, so a block cannot be made an identity in memory", f.Path, arch.ErrUnsupported, b.Arch.Name, s)
	}
	if s := b.Missing(b.Arch.Fold); s != "" {
		return nil, fmt.Errorf("%s: %w: architecture %q has no blk.0.%s to fold an alignment into", f.Path, arch.ErrUnsupported, b.Arch.Name, s)
	}
	e := &Editor{m: m, f: f, arch: b, codec: codec, committed: map[string][]byte{}, inModel: map[string]bool{}, zeroed: map[string]bool{},
		pending: map[string][]byte{}, pendZero: map[string]bool{}, pendDrop: map[int]bool{}, backup: map[string][]byte{}}
	for i := range b.Count {
		e.phys = append(e.phys, i)
	}
	return e, nil
}

// Blocks returns the number of current blocks.
func (e *Editor) Blocks() int { return len(e.phys) }

// Phys returns the loaded block that computes current block c.
func (e *Editor) Phys(c int) int { return e.phys[c] }

// Live returns, in order, the loaded blocks that change the residual
// stream now: the current blocks but those a pending Drop made
// identities. A decode that runs only these (runner.SessionOptions.Layers)
// computes what a decode of every block computes.
func (e *Editor) Live() []int {
	live := make([]int, 0, len(e.phys))
	for _, p := range e.phys {
		if !e.pendDrop[p] {
			live = append(live, p)
		}
	}
	return live
}

// current returns the bytes tensor name holds now, pending changes
// included.
func (e *Editor) current(name string) ([]byte, error) {
	if e.pendZero[name] {
		i, _ := e.f.Tensor(name)
		return e.zero(e.f.Tensors[i])
	}
	if b, ok := e.pending[name]; ok && b != nil {
		return b, nil
	}
	return e.data(name)
}

// data returns the bytes tensor name holds in the committed state. The
// file's bytes are read into a new slice rather than mapped, so that
// restoring many candidates does not keep their pages resident.
func (e *Editor) data(name string) ([]byte, error) {
	if b, ok := e.committed[name]; ok {
		return b, nil
	}
	if b, ok := e.backup[name]; ok {
		return b, nil
	}
	if e.inModel[name] {
		return e.readModel(name)
	}
	i, ok := e.f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %s", e.f.Path, name)
	}
	info := e.f.Tensors[i]
	if e.zeroed[name] {
		return e.zero(info)
	}
	b := make([]byte, info.Size())
	if _, err := e.f.TensorReader(i).ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", e.f.Path, name, err)
	}
	return b, nil
}

// readModel returns a copy of the bytes the loaded tensor name holds.
func (e *Editor) readModel(name string) ([]byte, error) {
	w, err := e.m.Weight(name)
	if err != nil {
		return nil, err
	}
	b := make([]byte, w.Bytes())
	if err := w.Get(b); err != nil {
		return nil, err
	}
	return b, nil
}

// set writes data into the loaded tensor name, tentatively. A committed
// edit that only the model holds is read back first (Restore needs it).
func (e *Editor) set(name string, data []byte) error {
	w, err := e.m.Weight(name)
	if err != nil {
		return err
	}
	if _, ok := e.backup[name]; e.inModel[name] && !ok {
		b, err := e.readModel(name)
		if err != nil {
			return err
		}
		e.backup[name] = b
	}
	if err := w.Set(data); err != nil {
		return err
	}
	e.pending[name] = data
	delete(e.pendZero, name)
	return nil
}

// zero returns the bytes of the tensor info with every value zero (an
// edit.Tensor of no parts).
func (e *Editor) zero(info gguf.TensorInfo) ([]byte, error) {
	t := edit.Tensor{Info: info}
	return t.Bytes(context.Background(), e.codec)
}

// tensors returns the infos of loaded block p's tensors among suffixes,
// those the model has.
func (e *Editor) tensors(p int, suffixes []string) []gguf.TensorInfo {
	var infos []gguf.TensorInfo
	for _, s := range suffixes {
		if i, ok := e.f.Tensor(fmt.Sprintf("blk.%d.%s", p, s)); ok {
			infos = append(infos, e.f.Tensors[i])
		}
	}
	return infos
}

// Drop makes current block c an identity (the tensors of its
// architecture's arch.Row.Identity zero), tentatively. The block stays
// current until Commit.
func (e *Editor) Drop(c int) error {
	p := e.phys[c]
	for _, info := range e.tensors(p, e.arch.Arch.Identity) {
		b, err := e.zero(info)
		if err != nil {
			return err
		}
		if err := e.set(info.Name, b); err != nil {
			return err
		}
		e.pending[info.Name] = nil // zeros are not kept as bytes (memory)
		e.pendZero[info.Name] = true
	}
	e.pendDrop[p] = true
	return nil
}

// Align folds a into current block c's output (the tensors of
// arch.Row.Fold: ffn_down W ← Tᵀ W, and its bias; or, for a post-norm
// architecture, a diagonal a into post_ffw_norm, w ← t ⊙ w), on top of what the
// block holds now, tentatively: the edit.Tensor of one part, the tensor's
// current bytes, with the fold, computed as the rewrite computes it.
func (e *Editor) Align(c int, a *merge.Alignment) error {
	if err := e.arch.Arch.CheckAlignment(a); err != nil {
		return err
	}
	var mm merge.MatMulTN
	if e.product != nil {
		mm = e.product.Compute
	}
	for _, info := range e.tensors(e.phys[c], e.arch.Arch.Fold) {
		raw, err := e.current(info.Name)
		if err != nil {
			return err
		}
		t := edit.Tensor{Info: info, Fold: a, Product: mm,
			Parts: []edit.Part{{Name: info.Name, Type: info.Type, Data: bytes.NewReader(raw), W: 1}}}
		b, err := t.Bytes(context.Background(), e.codec)
		if e.product != nil {
			e.product.Release() // its buffers hold two d×d matrices (peak memory)
		}
		if err != nil {
			return err
		}
		if err := e.set(info.Name, b); err != nil {
			return err
		}
	}
	return nil
}

// FirstPending returns the lowest loaded block with a tentative change
// (since the last Commit or Restore): the model computes as committed up
// to the input of that block. A change outside the blocks counts as block
// 0, except one after them (output_norm, output), which does not count;
// with nothing pending it returns the loaded model's block count.
func (e *Editor) FirstPending() int {
	first := e.m.NLayer()
	for name := range e.pending {
		var b int
		if _, err := fmt.Sscanf(name, "blk.%d.", &b); err == nil {
			first = min(first, b)
		} else if !strings.HasPrefix(name, "output") {
			first = 0
		}
	}
	return first
}

// Restore puts back every tensor changed since the last Commit.
func (e *Editor) Restore() error {
	for name := range e.pending {
		raw, err := e.data(name)
		if err != nil {
			return err
		}
		w, err := e.m.Weight(name)
		if err != nil {
			return err
		}
		if err := w.Set(raw); err != nil {
			return err
		}
	}
	clear(e.pending)
	clear(e.pendZero)
	clear(e.pendDrop)
	clear(e.backup)
	return nil
}

// Commit keeps the pending changes; current blocks first … first+n−1
// (made identities by Drop; n = 0: none) stop being current.
func (e *Editor) Commit(first, n int) {
	for name, b := range e.pending {
		delete(e.committed, name)
		delete(e.inModel, name)
		delete(e.zeroed, name)
		switch w, err := e.m.Weight(name); {
		case e.pendZero[name]:
			e.zeroed[name] = true
		case err == nil && w.Readable() && !e.keepBytes:
			e.inModel[name] = true
		default:
			e.committed[name] = b
		}
	}
	clear(e.pending)
	clear(e.pendZero)
	clear(e.pendDrop)
	clear(e.backup)
	if n > 0 {
		e.phys = append(e.phys[:first:first], e.phys[first+n:]...)
	}
}

// Reset puts every tensor back as the file holds it and makes every block
// current again, so that another search can start from the original model.
func (e *Editor) Reset() error {
	for name := range e.committed {
		e.pending[name] = nil
	}
	for name := range e.zeroed {
		e.pending[name] = nil
	}
	for name := range e.inModel {
		e.pending[name] = nil
	}
	clear(e.committed)
	clear(e.zeroed)
	clear(e.inModel)
	clear(e.backup)
	if err := e.Restore(); err != nil {
		return err
	}
	e.phys = e.phys[:0]
	for i := range e.m.NLayer() {
		e.phys = append(e.phys, i)
	}
	return nil
}
