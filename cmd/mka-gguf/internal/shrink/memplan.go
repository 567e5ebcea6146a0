package shrink

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mka-gguf/mka-gguf/gguf"
)

// MemoryPlan is what a merge that edits the loaded model needs of the
// machine's memory, estimated before anything is loaded (CPU; weights a
// GPU holds still pass through the host once).
type MemoryPlan struct {
	// Private is the anonymous memory the merge needs: the budget of issue
	// 11 (two blocks in float32 for the alignment statistics and the edits'
	// working set, 256 MiB of buffers), the logits of one decode and the
	// edits kept in the loaded model, which with NoMmap is all of it.
	Private int64
	// Mapped is the model's bytes mapped from the file (0 with NoMmap):
	// page cache, which the kernel may evict and read again.
	Mapped int64
	// Available is MemAvailable of /proc/meminfo (-1 when unknown).
	Available int64
}

// planMemory estimates the memory of the merge o of f (blocks b), with
// the model mapped unless o.Load.NoMmap:
//
//	Private = 2·block(f32) + 256 MiB + vocab·batch·4 + kept + stream + ridge
//
// kept is the whole model read into memory with NoMmap, else the edited
// tensors (arch.Row.Identity and Fold in their own type) of edits blocks
// in private buffers: for a search removing n blocks, n+1 (the committed
// edits and one candidate's). stream is the search's stored residual
// stream of the alignment chunks (align-samples · ctx · n_embd · 4, which
// lets a pass start in the middle of the model). ridge, with heal, is the
// healing stage's solve of one ffn_down (merge.Ridge: 8·(3·n_ff² +
// 3·n_ff·n_embd) bytes for the sums, the system and its factor, and
// 4·(n_ff² + n_ff·n_embd) for the float32 products).
func planMemory(o *Options, f *gguf.File, b *Blocks, edits int, heal bool) MemoryPlan {
	var model, edited int64
	for _, t := range f.Tensors {
		model += int64(t.Size())
	}
	for _, s := range append(append([]string(nil), b.Arch.Identity...), b.Arch.Fold...) {
		if i, ok := f.Tensor("blk.0." + s); ok {
			edited += int64(f.Tensors[i].Size())
		}
	}
	p := MemoryPlan{Private: 2*blockF32Bytes(f) + 256<<20 + vocab(f)*int64(o.Calib.Batch)*4, Available: memAvailable()}
	if o.search() && !o.Fast {
		p.Private += streamBytes(o, f)
	}
	if heal {
		p.Private += healBytes(f)
	}
	if o.Load.NoMmap {
		p.Private += model
	} else {
		p.Private += int64(edits) * edited
		p.Mapped = model
	}
	return p
}

// streamBytes returns the bytes of one stored residual stream of the
// alignment chunks (pipeline's reuse.go): samples × ctx × n_embd float32s.
func streamBytes(o *Options, f *gguf.File) int64 {
	e, _ := f.Uint(f.Arch() + ".embedding_length")
	return int64(o.AlignSamples) * int64(o.Calib.Ctx) * int64(e) * 4
}

// healBytes returns the bytes of the healing stage's least-squares system
// (merge.Ridge and its solve): 3 n_ff² + 3 n_ff·n_embd float64s and
// n_ff² + n_ff·n_embd float32s; 0 without a feed-forward length.
func healBytes(f *gguf.File) int64 {
	e, _ := f.Uint(f.Arch() + ".embedding_length")
	ff, ok := f.Uint(f.Arch() + ".feed_forward_length")
	if !ok {
		return 0
	}
	return 8*(3*int64(ff)*int64(ff)+3*int64(ff)*int64(e)) + 4*(int64(ff)*int64(ff)+int64(ff)*int64(e))
}

// vocab returns the rows of the token embedding (0 when it is missing).
func vocab(f *gguf.File) int64 {
	if i, ok := f.Tensor("token_embd.weight"); ok && len(f.Tensors[i].Dims) > 1 {
		return int64(f.Tensors[i].Dims[1])
	}
	return 0
}

// memAvailable returns MemAvailable of /proc/meminfo in bytes, or -1.
func memAvailable() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

// gib formats bytes in GiB.
func gib(b int64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }

// String is the plan line printed before the calibration pass.
func (p MemoryPlan) String() string {
	s := "memory: needs about " + gib(p.Private)
	if p.Mapped > 0 {
		s += " + the model's " + gib(p.Mapped) + " mapped from the file"
	} else {
		s += " (the model read into memory, --no-mmap)"
	}
	if p.Available < 0 {
		return s + "; available memory unknown"
	}
	return s + "; " + gib(p.Available) + " available"
}

// Check refuses a plan whose private memory exceeds what is available
// (path names the model), and returns a warning, or "", when only the
// mapped model does not fit beside it: its pages are then read from disk
// again on every pass.
func (p MemoryPlan) Check(path string) (warning string, err error) {
	if p.Available < 0 {
		return "", nil
	}
	if p.Private > p.Available {
		hint := ""
		if p.Mapped == 0 {
			hint = " (without --no-mmap the model stays mapped from the file and needs far less)"
		}
		return "", fmt.Errorf("%s: the merge needs about %s of memory, %s is available%s", path, gib(p.Private), gib(p.Available), hint)
	}
	if p.Private+p.Mapped > p.Available {
		return fmt.Sprintf("%s: the model (%s) does not fit in memory beside the merge (%s of %s available): its pages will be read from disk again on every pass (slow)",
			path, gib(p.Mapped), gib(p.Private), gib(p.Available)), nil
	}
	return "", nil
}
