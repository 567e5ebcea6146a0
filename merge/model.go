package merge

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// ErrUnsupported means a model's architecture or structure cannot be merged.
var ErrUnsupported = errors.New("merge: unsupported model")

// denseArchs are the llama.cpp architectures whose decoder blocks are dense
// and share one tensor layout, so blocks can be dropped, fused and
// renumbered. Others are refused with a reason.
var denseArchs = map[string]bool{
	"llama": true, "qwen2": true, "qwen3": true, "phi3": true, "gemma": true,
	"internlm2": true, "granite": true, "olmo": true, "olmo2": true,
	"stablelm": true, "starcoder2": true, "exaone": true, "smollm3": true,
}

// refusedArchs names architectures with a specific reason.
var refusedArchs = map[string]string{
	"gemma2":    "its blocks alternate sliding-window and global attention; removing a block breaks the pattern",
	"gemma3":    "its blocks interleave sliding-window and global attention; removing a block breaks the pattern",
	"cohere2":   "its blocks interleave sliding-window and global attention",
	"mamba":     "its blocks are recurrent (state-space), not attention blocks",
	"mamba2":    "its blocks are recurrent (state-space), not attention blocks",
	"rwkv6":     "its blocks are recurrent",
	"rwkv7":     "its blocks are recurrent",
	"jamba":     "it is a hybrid of recurrent and attention blocks",
	"falcon-h1": "it is a hybrid of recurrent and attention blocks",
	"qwen2moe":  "it is a mixture-of-experts model",
	"qwen3moe":  "it is a mixture-of-experts model",
	"mixtral":   "it is a mixture-of-experts model",
	"deepseek2": "it is a mixture-of-experts model",
	"llama4":    "it is a mixture-of-experts model with interleaved attention",
}

var blockName = regexp.MustCompile(`^blk\.(\d+)\.(.+)$`)

// Blocks describes a model's decoder blocks as stored in GGUF.
type Blocks struct {
	Arch  string
	Count int // <arch>.block_count
	// Suffixes are the tensor names of one block after "blk.<i>.", in file
	// order (e.g. "attn_q.weight").
	Suffixes []string
	// PerLayerKeys are metadata arrays with one entry per block, which a
	// rewrite slices.
	PerLayerKeys []string
}

// InspectBlocks checks that f is a dense decoder whose blocks can be
// dropped, fused and renumbered, and describes them. The error wraps
// ErrUnsupported and names the architecture and the reason.
func InspectBlocks(f *gguf.File) (*Blocks, error) {
	arch := f.Arch()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: architecture %q: %s", f.Path, ErrUnsupported, arch, fmt.Sprintf(format, args...))
	}
	if arch == "" {
		return nil, fmt.Errorf("%s: %w: no general.architecture key", f.Path, ErrUnsupported)
	}
	if why, ok := refusedArchs[arch]; ok {
		return nil, fail("%s", why)
	}
	if !denseArchs[arch] {
		return nil, fail("not a dense decoder mka-gguf knows how to merge (supported: %s)", supportedList())
	}
	if n, ok := f.Uint(arch + ".expert_count"); ok && n > 0 {
		return nil, fail("it is a mixture-of-experts model (%d experts)", n)
	}
	for _, kv := range f.KVs {
		if strings.Contains(kv.Key, "sliding_window_pattern") || strings.HasSuffix(kv.Key, ".attention.sliding_window") {
			return nil, fail("it uses sliding-window attention (%s), which a merge would misalign", kv.Key)
		}
	}
	count, ok := f.Uint(arch + ".block_count")
	if !ok || count == 0 {
		return nil, fail("no %s.block_count", arch)
	}
	b := &Blocks{Arch: arch, Count: int(count)}

	// Every block must have the same tensors with the same shapes.
	type tinfo struct {
		dims []uint64
	}
	per := make([]map[string]tinfo, count)
	for i := range per {
		per[i] = map[string]tinfo{}
	}
	for _, t := range f.Tensors {
		m := blockName.FindStringSubmatch(t.Name)
		if m == nil {
			continue
		}
		i, err := strconv.Atoi(m[1])
		if err != nil || i >= int(count) {
			return nil, fail("tensor %s is outside block_count %d", t.Name, count)
		}
		per[i][m[2]] = tinfo{t.Dims}
		if i == 0 {
			b.Suffixes = append(b.Suffixes, m[2])
		}
	}
	if len(b.Suffixes) == 0 {
		return nil, fail("no blk.<i>.* tensors")
	}
	for i := 1; i < int(count); i++ {
		if len(per[i]) != len(per[0]) {
			return nil, fail("block %d has %d tensors, block 0 has %d (blocks differ in structure)", i, len(per[i]), len(per[0]))
		}
		for s, t0 := range per[0] {
			t, ok := per[i][s]
			if !ok {
				return nil, fail("block %d has no %s (blocks differ in structure)", i, s)
			}
			if !slices.Equal(t.dims, t0.dims) {
				return nil, fail("blk.%d.%s has shape %v, blk.0 has %v (per-layer shapes differ)", i, s, t.dims, t0.dims)
			}
		}
	}
	for _, kv := range f.KVs {
		if a, ok := kv.Value.V.(gguf.Array); ok && kv.Value.Type == gguf.ValueArray && a.Len() == int(count) && strings.HasPrefix(kv.Key, arch+".") {
			b.PerLayerKeys = append(b.PerLayerKeys, kv.Key)
		}
	}
	return b, nil
}

func supportedList() string {
	var s []string
	for a, ok := range denseArchs {
		if ok {
			s = append(s, a)
		}
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
