package arch

import (
	"fmt"

	"github.com/mka-gguf/mka-gguf/merge"
)

// DefaultRemoval returns the number of blocks a merge removes by default:
// a quarter of them (at least one), rounded to the nearest multiple of
// Period (at least Period).
func (m *Model) DefaultRemoval() int {
	n := max(1, m.Count/4)
	if p := m.Period; p > 1 {
		n = max(p, (n+p/2)/p*p)
	}
	return n
}

// CheckRemoval returns nil when a merge can remove n of the blocks keeping
// what llama.cpp derives from the block index and the block count, or an
// error that names the file and says why not and which counts would do.
func (m *Model) CheckRemoval(n int) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: architecture %q: %s", m.Path, ErrUnsupported, m.Arch.Name, fmt.Sprintf(format, args...))
	}
	p := m.Period
	if p > 1 && n%p != 0 {
		lo, hi := n/p*p, (n/p+1)*p
		var valid string
		switch {
		case lo >= p && hi <= m.Count-1:
			valid = fmt.Sprintf("%d or %d", lo, hi)
		case lo >= p:
			valid = fmt.Sprint(lo)
		case hi <= m.Count-1:
			valid = fmt.Sprint(hi)
		default:
			return fail("its %s repeats every %d blocks, so blocks are removed in runs of %d, and %d blocks leave no run to remove", m.Pattern.What, p, p, m.Count)
		}
		return fail("its %s repeats every %d blocks, so blocks are removed in runs of %d: removing %d would shift it (remove %s)", m.Pattern.What, p, p, n, valid)
	}
	if p > 1 && p > m.Count-1 {
		return fail("its %s repeats every %d blocks, so blocks are removed in runs of %d, and %d blocks leave no run to remove", m.Pattern.What, p, p, m.Count)
	}
	return m.checkCount(m.Count - n)
}

// checkCount refuses an output of left blocks that is shorter than one
// period of an index pattern (a kind of block would be missing: llama.cpp
// then builds an empty KV cache for it and aborts) or whose attention
// scale llama.cpp would choose differently (Row.ScaleBlocks).
func (m *Model) checkCount(left int) error {
	if p := m.Period; p > 1 && m.Pattern.Caches && left < p {
		return fmt.Errorf("%s: %w: architecture %q: %d blocks would be left, fewer than one whole %s of %d blocks, so a kind of block would be missing",
			m.Path, ErrUnsupported, m.Arch.Name, left, m.Pattern.What, p)
	}
	if !m.scaleByCount {
		return nil
	}
	if s := m.Arch.ScaleBlocks; (m.Count == s) != (left == s) {
		return fmt.Errorf("%s: %w: architecture %q: llama.cpp scales the attention of a %d-block model (its 27B size) by 1/sqrt(n_embd/n_head), of any other by 1/sqrt(key_length), which differ for this model: %d blocks would change it",
			m.Path, ErrUnsupported, m.Arch.Name, s, left)
	}
	return nil
}

// CheckPlan returns nil when plan keeps what llama.cpp derives from the
// block index: every output block's parts of nonzero weight (its kept
// blocks) have as many removed blocks before them as a multiple of Period
// (original block ≡ output block mod Period; a fusion of neighbours
// breaks it unless Period is 1); blocks after the last kept one are free.
// It also checks the block count (checkCount).
func (m *Model) CheckPlan(plan *merge.Plan) error {
	if p := m.Period; p > 1 {
		for o, parts := range plan.Layout {
			for _, w := range parts {
				if w.W != 0 && (w.Block-o)%p != 0 {
					return fmt.Errorf("%s: %w: architecture %q: its %s repeats every %d blocks; the plan puts block %d at position %d (%d removed before it, not a multiple of %d)",
						m.Path, ErrUnsupported, m.Arch.Name, m.Pattern.What, p, w.Block, o, w.Block-o, p)
				}
			}
		}
	}
	return m.checkCount(len(plan.Layout))
}

// Notes says for people what a merge of this model does differently from
// one of a llama (none for a llama-like model).
func (m *Model) Notes() []string {
	var notes []string
	if m.Arch.Align != AlignFull {
		notes = append(notes, "alignment: "+m.Arch.Align.String())
	}
	if m.Period > 1 {
		notes = append(notes, fmt.Sprintf("removes blocks in runs of %d (%s)", m.Period, m.Pattern.What))
	}
	if m.Resume != ResumeAll {
		notes = append(notes, "decodes: "+m.Resume.String())
	}
	return notes
}

// Mergeable returns nil when the default merge of the model can run
// (CheckRemoval of DefaultRemoval).
func (m *Model) Mergeable() error { return m.CheckRemoval(m.DefaultRemoval()) }

// CheckAlignment returns nil when a folds into the row's Fold tensors
// exactly: any T for AlignFull, a diagonal one for AlignDiagonal.
func (r *Row) CheckAlignment(a *merge.Alignment) error {
	if r.Align == AlignDiagonal && !a.IsDiagonal() {
		return fmt.Errorf("%w: architecture %q folds only a diagonal alignment (post-norm), this one is a full matrix", merge.ErrAlign, r.Name)
	}
	return nil
}
