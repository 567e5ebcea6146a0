package shrink

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mka-gguf/mka-gguf/gguf/synth"
)

// TestMemoryPlan: mapped, the plan counts the edited tensors of the
// blocks a search keeps edited instead of the whole model, which it
// names as mapped; read into memory (--no-mmap) it counts the model.
// Check refuses a plan above the available memory, warns when only the
// mapped model does not fit beside it, and says nothing otherwise.
func TestMemoryPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := synth.Write(path, synth.Tiny()); err != nil {
		t.Fatal(err)
	}
	f, b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var model int64
	for _, ti := range f.Tensors {
		model += int64(ti.Size())
	}
	o := Defaults()
	o.In = path
	embd, _ := f.Uint("llama.embedding_length")
	stream := int64(o.AlignSamples) * int64(o.Calib.Ctx) * int64(embd) * 4 // the search's stored stream
	base := 2*blockF32Bytes(f) + 256<<20 + vocab(f)*int64(o.Calib.Batch)*4 + stream
	if vocab(f) == 0 || embd == 0 {
		t.Fatal("no vocabulary size from token_embd.weight or no embedding length")
	}
	fast := o
	fast.Fast = true
	if p := planMemory(&fast, f, b, 0, false); p.Private != base-stream {
		t.Fatalf("a --fast plan needs %d, want %d (no stored stream)", p.Private, base-stream)
	}

	mapped := planMemory(&o, f, b, 3, false)
	if mapped.Mapped != model {
		t.Fatalf("mapped plan: %d mapped bytes, want the model's %d", mapped.Mapped, model)
	}
	kept := mapped.Private - base
	if kept <= 0 || kept%3 != 0 || kept/3 >= model/int64(b.Count) {
		t.Fatalf("mapped plan keeps %d bytes of edits for 3 blocks; want 3 × less than a block (%d)", kept, model/int64(b.Count))
	}
	if none := planMemory(&o, f, b, 0, false); none.Private != base {
		t.Fatalf("a plan without edits needs %d, want %d", none.Private, base)
	}
	ff, _ := f.Uint("llama.feed_forward_length")
	if heal := planMemory(&o, f, b, 0, true); heal.Private != base+8*(3*int64(ff*ff)+3*int64(ff*embd))+4*int64(ff*ff+ff*embd) || ff == 0 {
		t.Fatalf("a plan with healing needs %d, want %d + the ridge solve of n_ff %d", heal.Private, base, ff)
	}
	o.Load.NoMmap = true
	anon := planMemory(&o, f, b, 3, false)
	if anon.Mapped != 0 || anon.Private != base+model {
		t.Fatalf("--no-mmap plan: %d private, %d mapped; want %d and 0", anon.Private, anon.Mapped, base+model)
	}
	if !strings.Contains(mapped.String(), "mapped from the file") || !strings.Contains(anon.String(), "--no-mmap") {
		t.Fatalf("plan lines: %q, %q", mapped.String(), anon.String())
	}

	for _, c := range []struct {
		p             MemoryPlan
		warn, refused bool
	}{
		{MemoryPlan{Private: 100, Mapped: 50, Available: 200}, false, false},
		{MemoryPlan{Private: 100, Mapped: 150, Available: 200}, true, false},
		{MemoryPlan{Private: 300, Mapped: 50, Available: 200}, false, true},
		{MemoryPlan{Private: 300, Available: 200}, false, true},
		{MemoryPlan{Private: 300, Available: -1}, false, false},
	} {
		warning, err := c.p.Check(path)
		if (warning != "") != c.warn || (err != nil) != c.refused {
			t.Errorf("%+v: warning %q, error %v", c.p, warning, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("the refusal does not name the file: %v", err)
		}
	}
	if _, err := (MemoryPlan{Private: 300, Available: 200}).Check(path); !strings.Contains(err.Error(), "without --no-mmap") {
		t.Errorf("refusal of a --no-mmap plan gives no hint: %v", err)
	}
	if runtime.GOOS == "linux" && memAvailable() <= 0 {
		t.Error("no MemAvailable read from /proc/meminfo")
	}
}
