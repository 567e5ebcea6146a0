package arch

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// blockName matches a block tensor's name: blk.<i>.<suffix>.
var blockName = regexp.MustCompile(`^blk\.(\d+)\.(.+)$`)

// BlockTensor splits a block tensor's name into its block and suffix; ok
// is false for a tensor outside the blocks.
func BlockTensor(name string) (block int, suffix string, ok bool) {
	m := blockName.FindStringSubmatch(name)
	if m == nil {
		return 0, "", false
	}
	b, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, "", false
	}
	return b, m[2], true
}

// Model describes a model's decoder blocks as stored in GGUF.
type Model struct {
	Path  string
	Arch  *Row
	Count int // <arch>.block_count
	// Suffixes are the tensor names of one block after "blk.<i>.", in file
	// order (e.g. "attn_q.weight").
	Suffixes []string
	// PerLayerKeys are the metadata arrays with one entry per block, which
	// a rewrite slices.
	PerLayerKeys []string
	// Pattern is the row's index-derived pattern when this model has it
	// (nil: none), and Period its period (1 without): a merge removes
	// blocks in runs of Period (CheckRemoval, KeepsPattern).
	Pattern *Pattern
	Period  int
	// Resume is which decodes of some blocks are exact for this model:
	// the row's, less what its metadata or its Pattern rules out.
	Resume Resume
	// scaleByCount: llama.cpp's attention scale of this model depends on
	// its block count (Row.ScaleBlocks with key_length ≠ n_embd/n_head).
	scaleByCount bool
}

// Has reports whether the blocks have tensor suffix.
func (m *Model) Has(suffix string) bool { return slices.Contains(m.Suffixes, suffix) }

// Inspect checks that f is a dense decoder whose blocks can be dropped,
// fused and renumbered (its row is accepted, every block has the same
// tensors with the same shapes) and describes them. The error wraps
// ErrUnsupported and names the file, the architecture and the reason.
func Inspect(f *gguf.File) (*Model, error) {
	name := f.Arch()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: architecture %q: %s", f.Path, ErrUnsupported, name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return nil, fmt.Errorf("%s: %w: no general.architecture key", f.Path, ErrUnsupported)
	}
	row, ok := Lookup(name)
	if !ok {
		return nil, fail("not a dense decoder mka-gguf knows how to merge (supported: %s)", supportedList())
	}
	if row.Refused != "" {
		return nil, fail("%s", row.Refused)
	}
	if n, ok := f.Uint(name + ".expert_count"); ok && n > 0 {
		return nil, fail("it is a mixture-of-experts model (%d experts)", n)
	}
	for _, kv := range f.KVs {
		if strings.Contains(kv.Key, "sliding_window_pattern") || (!row.Window && strings.HasSuffix(kv.Key, ".attention.sliding_window")) {
			return nil, fail("it uses sliding-window attention (%s), which a merge would misalign", kv.Key)
		}
	}
	count, ok := f.Uint(name + ".block_count")
	if !ok || count == 0 {
		return nil, fail("no %s.block_count", name)
	}
	m := &Model{Path: f.Path, Arch: row, Count: int(count), Period: 1, Resume: row.Resume}
	if p := row.Pattern; p != nil {
		if v, ok := f.Uint(name + "." + p.When); p.When == "" || ok && v > 0 {
			m.Pattern, m.Period = p, p.Period
		}
	}
	if m.Period > 1 && m.Resume == ResumeAll {
		// A decode from the middle puts its first block at graph index 0,
		// which moves it in the pattern (cgo refuses such a decode).
		m.Resume = ResumeTokens
	}
	if s, ok := f.Float(name + ".embedding_scale"); ok && s != 0 && s != 1 && m.Resume == ResumeAll {
		m.Resume = ResumeTokens // granite: a decode from the middle would scale its input again
	}
	if row.ScaleBlocks > 0 {
		embd, _ := f.Uint(name + ".embedding_length")
		heads, _ := f.Uint(name + ".attention.head_count")
		key, ok := f.Uint(name + ".attention.key_length")
		m.scaleByCount = ok && heads > 0 && embd/heads != key
	}

	// Every block must have the same tensors with the same shapes.
	per := make([]map[string][]uint64, count)
	for i := range per {
		per[i] = map[string][]uint64{}
	}
	for _, t := range f.Tensors {
		if !blockName.MatchString(t.Name) {
			continue
		}
		i, s, ok := BlockTensor(t.Name)
		if !ok || i >= int(count) {
			return nil, fail("tensor %s is outside block_count %d", t.Name, count)
		}
		per[i][s] = t.Dims
		if i == 0 {
			m.Suffixes = append(m.Suffixes, s)
		}
	}
	if len(m.Suffixes) == 0 {
		return nil, fail("no blk.<i>.* tensors")
	}
	for i := 1; i < int(count); i++ {
		if len(per[i]) != len(per[0]) {
			return nil, fail("block %d has %d tensors, block 0 has %d (blocks differ in structure)", i, len(per[i]), len(per[0]))
		}
		for s, d0 := range per[0] {
			d, ok := per[i][s]
			if !ok {
				return nil, fail("block %d has no %s (blocks differ in structure)", i, s)
			}
			if !slices.Equal(d, d0) {
				return nil, fail("blk.%d.%s has shape %v, blk.0 has %v (per-layer shapes differ)", i, s, d, d0)
			}
		}
	}
	for _, kv := range f.KVs {
		if perLayer(row, name, kv, int(count)) {
			m.PerLayerKeys = append(m.PerLayerKeys, kv.Key)
		}
	}
	return m, nil
}

// perLayer reports whether kv is one of row's per-layer keys (an array of
// count values).
func perLayer(row *Row, name string, kv gguf.KV, count int) bool {
	a, ok := kv.Value.V.(gguf.Array)
	if !ok || kv.Value.Type != gguf.ValueArray || a.Len() != count || !strings.HasPrefix(kv.Key, name+".") {
		return false
	}
	return row.PerLayerKeys == nil || slices.Contains(row.PerLayerKeys, strings.TrimPrefix(kv.Key, name+"."))
}

// Missing returns the first tensor of list (Row.Identity, Row.Fold) that
// the blocks lack and may not lack, or "".
func (m *Model) Missing(list []string) string {
	for _, s := range list {
		if !m.Has(s) && !m.Arch.IsOptional(s) {
			return s
		}
	}
	return ""
}
