// Package pipeline is mka-gguf's merge pipeline after calibration: it
// searches for the blocks to remove on ONE loaded model, editing its
// weights in memory (a removed block becomes an exact identity, a kept
// block gets its least-squares alignment folded into ffn_down), scores
// candidates on held-back calibration text with one llama.cpp context, and
// returns the plan and the alignments that the streaming rewrite writes.
// No candidate file is ever written: the cost of a merge is a few
// calibration passes, whatever the model size.
package pipeline

import (
	"fmt"
	"strings"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// outputSuffixes are the tensors that write a block's contribution to the
// residual stream: with all of them zero, a pre-norm residual block
// (x + attn(norm(x)), then + ffn(norm(·))) is the identity.
var outputSuffixes = []string{"attn_output.weight", "attn_output.bias", "ffn_down.weight", "ffn_down.bias"}

// Editor edits a model loaded with writable weights (cgo.ModelParams.NoMmap).
// Blocks are "current" blocks (after the steps taken so far); phys maps each
// to the loaded block that computes it, the others being zeroed (identity).
// Changes are tentative until Commit; Restore undoes them.
type Editor struct {
	m     *cgo.Model
	f     *gguf.File
	codec merge.Codec
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
// and returns an editor of m, which must have been loaded from f with
// writable weights.
func NewEditor(m *cgo.Model, f *gguf.File, b *merge.Blocks, codec merge.Codec) (*Editor, error) {
	if m.NLayer() != b.Count {
		return nil, fmt.Errorf("%s: llama.cpp sees %d blocks, the file has %d", f.Path, m.NLayer(), b.Count)
	}
	for _, s := range []string{"attn_output.weight", "ffn_down.weight"} {
		if _, ok := f.Tensor("blk.0." + s); !ok {
			return nil, fmt.Errorf("%s: %w: architecture %q has no blk.0.%s, so a block cannot be made an identity in memory", f.Path, merge.ErrUnsupported, b.Arch, s)
		}
	}
	e := &Editor{m: m, f: f, codec: codec, committed: map[string][]byte{}, inModel: map[string]bool{}, zeroed: map[string]bool{},
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
		info := e.f.Tensors[i]
		return e.encode(info, make([]float32, info.Elements()))
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
		return e.encode(info, make([]float32, info.Elements()))
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

// Floats returns the values a tensor holds now (pending changes included)
// as float32.
func (e *Editor) Floats(name string) ([]float32, gguf.TensorInfo, error) {
	i, ok := e.f.Tensor(name)
	if !ok {
		return nil, gguf.TensorInfo{}, fmt.Errorf("%s: no tensor %s", e.f.Path, name)
	}
	info := e.f.Tensors[i]
	raw, err := e.current(name)
	if err != nil {
		return nil, info, err
	}
	v := make([]float32, info.Elements())
	if err := e.codec.Decode(info.Type, raw, v); err != nil {
		return nil, info, fmt.Errorf("%s: %w", name, err)
	}
	return v, info, nil
}

// encode returns v in the tensor's own type.
func (e *Editor) encode(info gguf.TensorInfo, v []float32) ([]byte, error) {
	perRow := int(info.Dims[0])
	rs, err := info.Type.RowSize(uint64(perRow))
	if err != nil {
		return nil, err
	}
	rows := len(v) / perRow
	buf := make([]byte, int(rs)*rows)
	if err := e.codec.Encode(info.Type, v, buf, rows, perRow); err != nil {
		return nil, fmt.Errorf("%s: %w", info.Name, err)
	}
	return buf, nil
}

// setFloats encodes v in the tensor's own type and sets it.
func (e *Editor) setFloats(name string, info gguf.TensorInfo, v []float32) error {
	buf, err := e.encode(info, v)
	if err != nil {
		return err
	}
	return e.set(name, buf)
}

// Drop makes current block c an identity (its output tensors zero),
// tentatively. The block stays current until Commit.
func (e *Editor) Drop(c int) error {
	p := e.phys[c]
	for _, s := range outputSuffixes {
		name := fmt.Sprintf("blk.%d.%s", p, s)
		i, ok := e.f.Tensor(name)
		if !ok {
			continue
		}
		info := e.f.Tensors[i]
		if err := e.setFloats(name, info, make([]float32, info.Elements())); err != nil {
			return err
		}
		e.pending[name] = nil // zeros are not kept as bytes (memory)
		e.pendZero[name] = true
	}
	e.pendDrop[p] = true
	return nil
}

// Align folds a into current block c's FFN output (ffn_down W ← Tᵀ W, and
// its bias), on top of what the block holds now, tentatively.
func (e *Editor) Align(c int, a *merge.Alignment) error {
	return e.fold(c, a, merge.AlignedSuffixes)
}

// AlignAttn folds a into current block c's attention output (attn_output
// W ← Tᵀ W, and its bias), tentatively.
func (e *Editor) AlignAttn(c int, a *merge.Alignment) error {
	return e.fold(c, a, merge.AttnAlignedSuffixes)
}

// fold applies a to the rows of current block c's tensors suffixes.
func (e *Editor) fold(c int, a *merge.Alignment, suffixes []string) error {
	p := e.phys[c]
	for _, s := range suffixes {
		name := fmt.Sprintf("blk.%d.%s", p, s)
		if _, ok := e.f.Tensor(name); !ok {
			continue
		}
		v, info, err := e.Floats(name)
		if err != nil {
			return err
		}
		perRow := int(info.Dims[0])
		var mm merge.MatMulTN
		if len(v) == a.D {
			perRow = 1 // a bias
		} else if e.product != nil {
			mm = e.product.Compute
		}
		err = a.FoldRowsInPlaceWith(v, perRow, mm)
		if e.product != nil {
			e.product.Release() // its buffers hold two d×d matrices (peak memory)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := e.setFloats(name, info, v); err != nil {
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

// Commit keeps the pending changes; when dropped ≥ 0, current block dropped
// (made an identity by Drop) stops being current.
func (e *Editor) Commit(dropped int) {
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
	if dropped >= 0 {
		e.phys = append(e.phys[:dropped:dropped], e.phys[dropped+1:]...)
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

// Fuse writes λ θ_b + (1 − λ) θ_c, from the values of current
// blocks b and c = b+1, into every tensor of block b and makes block c an
// identity, tentatively (the fusion of merge.StepFuse with weight λ).
// With perm, θ_c is first reordered by it (merge.MatchBlocks), as
// merge.RewriteOptions.Permute does in the file.
func (e *Editor) Fuse(b int, lambda float64, suffixes []string, perm merge.BlockPerm) error {
	pb, pc := e.phys[b], e.phys[b+1]
	for _, s := range suffixes {
		nb, nc := fmt.Sprintf("blk.%d.%s", pb, s), fmt.Sprintf("blk.%d.%s", pc, s)
		vb, info, err := e.Floats(nb)
		if err != nil {
			return err
		}
		vc, _, err := e.Floats(nc)
		if err != nil {
			return err
		}
		if tp, ok := perm[s]; ok {
			if vc, err = tp.Apply(vc, int(info.Dims[0])); err != nil {
				return fmt.Errorf("%s: %w", nc, err)
			}
		}
		if len(vb) != len(vc) {
			return fmt.Errorf("%s and %s differ in shape", nb, nc)
		}
		l := float32(lambda)
		for i := range vb {
			vb[i] = l*vb[i] + (1-l)*vc[i]
		}
		if err := e.setFloats(nb, info, vb); err != nil {
			return err
		}
	}
	return e.Drop(b + 1)
}

// BlockTensors returns a merge.BlockTensors of current block c's values
// as they are now (pending changes included).
func (e *Editor) BlockTensors(c int) merge.BlockTensors {
	p := e.phys[c]
	return func(suffix string) ([]float32, []int, bool, error) {
		name := fmt.Sprintf("blk.%d.%s", p, suffix)
		if _, ok := e.f.Tensor(name); !ok {
			return nil, nil, false, nil
		}
		v, info, err := e.Floats(name)
		if err != nil {
			return nil, nil, true, err
		}
		dims := make([]int, len(info.Dims))
		for i, d := range info.Dims {
			dims[i] = int(d)
		}
		return v, dims, true, nil
	}
}
