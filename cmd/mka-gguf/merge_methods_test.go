package main

// "mka-gguf merge" with every method on a real model, checked through its
// --report and the written file.

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/shrink"
	"github.com/mka-gguf/mka-gguf/internal/shared"
)

// mtReport is the part of merge's --report JSON the tests check.
type mtReport struct {
	Input       string `json:"input"`
	InputSHA256 string `json:"input_sha256"`
	Output      string `json:"output"`
	Method      string `json:"method"`
	Before      int    `json:"blocks_before"`
	After       int    `json:"blocks_after"`
	Steps       []struct {
		Step   int    `json:"step"`
		Kind   string `json:"kind"`
		Block  *int   `json:"block"`  // a drop
		Blocks []int  `json:"blocks"` // a fusion
		Lambda float64
	} `json:"steps"`
	Layout [][]struct {
		Block int     `json:"block"`
		W     float64 `json:"weight"`
	} `json:"layout"`
	Search []struct {
		Step       int     `json:"step"`
		Drop       int     `json:"drop"`
		Residual   float64 `json:"residual"`
		Unaligned  float64 `json:"residual_unaligned"`
		NLL        float64 `json:"heldback_nll"`
		Candidates []struct {
			Drop    int      `json:"drop"`
			NLL     *float64 `json:"heldback_nll"`
			Race    int      `json:"race_chunks"`
			Partial *float64 `json:"heldback_nll_partial"`
			Chosen  bool     `json:"chosen"`
		} `json:"candidates"`
	} `json:"search"`
	Heal *struct {
		Before  float64 `json:"heldback_nll_before"`
		After   float64 `json:"heldback_nll_after"`
		Skipped string  `json:"skipped"`
		Refits  []struct {
			Block int  `json:"block"`
			Kept  bool `json:"kept"`
		} `json:"refits"`
	} `json:"heal"`
	Align       string `json:"align"`
	BytesBefore int64  `json:"bytes_before"`
	BytesAfter  int64  `json:"bytes_after"`
}

func TestMergeMethods(t *testing.T) {
	model := shared.Model(t, "stories260K.gguf")
	calib := shared.Path(t, "data/tinystories-train.txt")
	sum, err := files.SHA256(model)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, method, planner string
		extra                 []string
	}{
		{"mka-lambda-0.5", "mka", "mka", []string{"--lambda", "0.5"}},
		{"mka-search", "mka", "mka", nil},
		{"prune-reverse", "prune-reverse", "reverse", nil},
		{"prune-bi", "prune-bi", "bi", nil},
		{"prune-angular", "prune-angular", "angular", nil},
		{"replaceme", "replaceme", "replaceme", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out := filepath.Join(dir, "out.gguf")
			rep := filepath.Join(dir, "report.json")
			args := append([]string{"-q", "merge", "--method", c.method, "--remove", "1", "--samples", "32", "--ctx", "64",
				"--calib", calib, "--threads", "1", "--report", rep, model, out}, c.extra...)
			start := time.Now()
			stdout, stderr, code := run(t, args...)
			wantOK(t, args, stdout, stderr, code)
			t.Logf("merge took %v:\n%s", time.Since(start).Round(time.Millisecond), stdout)
			if !strings.Contains(stdout, c.planner+": 5 -> 4 blocks (1 removed)") || !strings.Contains(stdout, "wrote "+out) {
				t.Errorf("stdout lacks the plan or the summary:\n%s", stdout)
			}

			// inspect sees a 4-block model with the provenance keys.
			iargs := []string{"inspect", "--json", out}
			istdout, istderr, icode := run(t, iargs...)
			wantOK(t, iargs, istdout, istderr, icode)
			var ins struct {
				BlockCount uint64            `json:"block_count"`
				Mergeable  bool              `json:"mergeable"`
				Provenance map[string]string `json:"mka"`
			}
			if err := json.Unmarshal([]byte(istdout), &ins); err != nil {
				t.Fatalf("inspect --json: %v\n%s", err, istdout)
			}
			if ins.BlockCount != 4 || !ins.Mergeable {
				t.Errorf("inspect: block_count %d, mergeable %v; want 4, true", ins.BlockCount, ins.Mergeable)
			}
			if ins.Provenance["method"] != c.method || ins.Provenance["source_block_count"] != "5" || ins.Provenance["source_sha256"] != sum {
				t.Errorf("inspect: provenance %v", ins.Provenance)
			}

			// The report.
			b := readFile(t, rep)
			var r mtReport
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("report: %v\n%s", err, b)
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if r.Method != c.method || r.Before != 5 || r.After != 4 || r.Input != model || r.InputSHA256 != sum ||
				r.Output != out || r.BytesAfter != st.Size() || r.BytesBefore <= r.BytesAfter {
				t.Errorf("report: method %q, blocks %d -> %d, input %s (%s), output %s, bytes %d -> %d (file %d)",
					r.Method, r.Before, r.After, r.Input, r.InputSHA256, r.Output, r.BytesBefore, r.BytesAfter, st.Size())
			}
			if len(r.Steps) != 1 || r.Steps[0].Step != 1 {
				t.Fatalf("report: steps %+v, want one step numbered 1", r.Steps)
			}
			if len(r.Layout) != 4 {
				t.Fatalf("report: layout of %d blocks, want 4:\n%s", len(r.Layout), b)
			}
			used := map[int]bool{}
			last := -1
			for o, parts := range r.Layout {
				var s float64
				for _, p := range parts {
					if p.Block <= last || p.Block >= 5 || used[p.Block] {
						t.Errorf("report: layout block %d uses original block %d out of order or twice", o, p.Block)
					}
					used[p.Block], last = true, p.Block
					s += p.W
				}
				if math.Abs(s-1) > 1e-9 {
					t.Errorf("report: layout block %d weights sum to %v", o, s)
				}
			}
			if c.name == "mka-lambda-0.5" {
				if r.Steps[0].Kind != "fuse" || len(used) != 5 {
					t.Errorf("report: mka step %+v, %d original blocks used; want a fusion using all 5", r.Steps[0], len(used))
				}
			} else {
				if r.Steps[0].Kind != "drop" || len(used) != 4 {
					t.Errorf("report: %s step %+v, %d original blocks used; want a drop using 4", c.method, r.Steps[0], len(used))
				}
			}
			switch c.name {
			case "mka-lambda-0.5":
				if r.Steps[0].Lambda != 0.5 || len(r.Search) != 0 {
					t.Errorf("report: λ %v, %d search steps; want 0.5 and no search", r.Steps[0].Lambda, len(r.Search))
				}
			case "mka-search":
				// One step: every block but block 0 is a candidate, the
				// filter's best --candidates (all 4 here) are scored on held-back text,
				// the chosen one is the scored one with the lowest loss, and
				// the alignment lowers its in-sample residual.
				if len(r.Search) != 1 || r.Align != "ls" {
					t.Fatalf("report: %d search steps, align %q; want 1 and ls", len(r.Search), r.Align)
				}
				st := r.Search[0]
				scored, chosen := 0, 0
				best := math.Inf(1)
				for _, c := range st.Candidates {
					if c.NLL != nil {
						scored++
						best = min(best, *c.NLL)
					}
					if c.Race > 0 { // stopped by the race: a partial loss only
						scored++
						if c.NLL != nil || c.Partial == nil || c.Chosen {
							t.Errorf("report: raced candidate %+v", c)
						}
					}
					if c.Chosen {
						chosen++
						if c.Drop != st.Drop || c.NLL == nil || *c.NLL != st.NLL {
							t.Errorf("report: chosen candidate %+v, step drops %d with loss %v", c, st.Drop, st.NLL)
						}
					}
				}
				final := min(4, shrink.Defaults().Candidates)
				if len(st.Candidates) != 4 || scored != final || chosen != 1 || st.NLL != best {
					t.Errorf("report: %d candidates, %d scored, %d chosen, loss %v (best %v); want 4, %d, 1, the best", len(st.Candidates), scored, chosen, st.NLL, best, final)
				}
				if !(st.Residual < st.Unaligned) || r.Steps[0].Block == nil || *r.Steps[0].Block != st.Drop {
					t.Errorf("report: residual %v aligned, %v without; plan step %+v, search drops %d", st.Residual, st.Unaligned, r.Steps[0], st.Drop)
				}
				if ins.Provenance["align.method"] != "ls" {
					t.Errorf("inspect: provenance %v lacks align.method ls", ins.Provenance)
				}
				// The healing stage ran from the block before the removal
				// and did not raise the held-back loss.
				if h := r.Heal; h == nil || h.Skipped != "" || len(h.Refits) == 0 || h.Refits[0].Block != st.Drop-1 || !(h.After <= h.Before) {
					t.Errorf("report: heal %+v, want refits from blk %d on and no higher loss", h, st.Drop-1)
				}
			case "replaceme":
				// One drop after block 0, the transform fitted (it lowers the
				// in-sample residual), no search, no healing.
				b := r.Steps[0].Block
				if b == nil || *b < 1 || r.Align != "ls" || len(r.Search) != 1 || r.Heal != nil ||
					!(r.Search[0].Residual < r.Search[0].Unaligned) || ins.Provenance["align.method"] != "ls" {
					t.Errorf("report: replaceme step %+v, align %q, search %+v, heal %v, provenance %v", r.Steps[0], r.Align, r.Search, r.Heal, ins.Provenance)
				}
			case "prune-reverse":
				if b := r.Steps[0].Block; b == nil || *b != 4 || r.Steps[0].Blocks != nil {
					t.Errorf("report: prune-reverse step %+v, want a drop of block 4", r.Steps[0])
				}
			}
			mtNoLeftovers(t, dir)
			if names := mtFiles(t, dir); len(names) != 2 {
				t.Errorf("output folder holds %q, want out.gguf and report.json", names)
			}
		})
	}
}
