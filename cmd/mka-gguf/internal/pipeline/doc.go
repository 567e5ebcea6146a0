// Package pipeline is mka-gguf's merge search after calibration: it
// searches for the blocks to remove on ONE loaded model, editing its
// weights in memory (Editor: a removed block becomes an exact identity, a
// kept block gets its least-squares alignment folded into ffn_down, both
// computed by package edit as the streaming rewrite computes them), scores
// candidates on held-back calibration text with one llama.cpp context, and
// returns the plan and the alignments that edit.Rewrite writes. No
// candidate file is ever written: the cost of a merge is a few calibration
// passes, whatever the model size.
//
// A search step (Searcher.Search) is an alignment pass (pass.go, or the
// calibration pass itself: Prefill), the closed-form fit of every
// candidate, a filter, and a race of the best few on the held-back text
// (race.go), whose decodes start at the first block a candidate changes
// (held.go). The search's own decodes also give the closing quality check
// (quality.go) and the progress lines' ETA (eta.go).
package pipeline
