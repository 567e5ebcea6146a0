package edit

import (
	"fmt"
	"reflect"

	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

// rewriteKVs returns the output metadata: block_count updated, per-layer
// arrays rearranged (each output block takes its first part's value, which
// every other part must share), extra keys added.
func rewriteKVs(f *gguf.File, m *arch.Model, plan *merge.Plan, extra []gguf.KV) ([]gguf.KV, error) {
	perLayer := map[string]bool{}
	for _, k := range m.PerLayerKeys {
		perLayer[k] = true
	}
	out := make([]gguf.KV, 0, len(f.KVs)+len(extra))
	for _, kv := range f.KVs {
		switch {
		case kv.Key == m.Arch.Name+".block_count":
			v, err := sameIntType(kv.Value, uint64(len(plan.Layout)))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", kv.Key, err)
			}
			kv.Value = v
		case perLayer[kv.Key]:
			a := kv.Value.V.(gguf.Array)
			idx := make([]int, len(plan.Layout))
			for j, parts := range plan.Layout {
				idx[j] = parts[0].Block
				for _, p := range parts[1:] {
					if !elemEqual(a, p.Block, parts[0].Block) {
						return nil, fmt.Errorf("%w: %s differs between blocks %d and %d, which the plan fuses", arch.ErrUnsupported, kv.Key, parts[0].Block, p.Block)
					}
				}
			}
			kv.Value = gguf.Value{Type: gguf.ValueArray, V: selectElems(a, idx)}
		}
		out = append(out, kv)
	}
	for _, kv := range extra {
		replaced := false
		for i := range out {
			if out[i].Key == kv.Key {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out, nil
}

// elemEqual reports whether elements i and j of an array are equal.
func elemEqual(a gguf.Array, i, j int) bool {
	v := reflect.ValueOf(a.Values)
	return reflect.DeepEqual(v.Index(i).Interface(), v.Index(j).Interface())
}

// selectElems returns the array of a's elements at idx, in that order.
func selectElems(a gguf.Array, idx []int) gguf.Array {
	v := reflect.ValueOf(a.Values)
	out := reflect.MakeSlice(v.Type(), len(idx), len(idx))
	for k, i := range idx {
		out.Index(k).Set(v.Index(i))
	}
	return gguf.Array{Elem: a.Elem, Values: out.Interface()}
}

// sameIntType returns v as a Value of the same integer type as like.
func sameIntType(like gguf.Value, v uint64) (gguf.Value, error) {
	switch like.Type {
	case gguf.ValueUint32:
		return gguf.Uint32(uint32(v)), nil
	case gguf.ValueInt32:
		return gguf.Int32(int32(v)), nil
	case gguf.ValueUint64:
		return gguf.Uint64(v), nil
	case gguf.ValueUint16:
		return gguf.Uint16(uint16(v)), nil
	}
	return gguf.Value{}, fmt.Errorf("unexpected type %s", like.Type)
}
