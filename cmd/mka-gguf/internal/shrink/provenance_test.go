package shrink

import (
	"slices"
	"testing"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/pipeline"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// TestProvenanceHeal: the output records exactly the blocks whose refit the
// healing stage kept, and nothing when it kept none.
func TestProvenanceHeal(t *testing.T) {
	r := &Result{Plan: &merge.Plan{Original: 4, Layout: [][]merge.Weighted{{{Block: 0, W: 1}}, {{Block: 2, W: 1}}, {{Block: 3, W: 1}}}},
		Method: MKA, AlignMethod: "none",
		Heal: &pipeline.HealReport{Rho: 1e-3, Refits: []pipeline.HealStep{{Block: 0, Kept: true}, {Block: 1}, {Block: 2, Kept: true}}}}
	get := func() (blocks []int32, ok bool) {
		for _, kv := range Provenance(r, "test", "sum") {
			if kv.Key == "mka.heal.blocks" {
				a, _ := kv.Value.V.(gguf.Array)
				v, _ := a.Values.([]int32)
				return v, true
			}
		}
		return nil, false
	}
	if got, ok := get(); !ok || !slices.Equal(got, []int32{0, 2}) {
		t.Errorf("mka.heal.blocks = %v (present %v), want [0 2]", got, ok)
	}
	r.Heal.Refits = []pipeline.HealStep{{Block: 1}}
	if got, ok := get(); ok {
		t.Errorf("no refit kept, yet mka.heal.blocks = %v", got)
	}
}
