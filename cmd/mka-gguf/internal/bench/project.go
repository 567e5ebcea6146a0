package bench

import (
	"fmt"
	"strings"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/files"
	"github.com/mka-gguf/mka-gguf/gguf"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Shape is a llama decoder's shape, for parameter and FLOP counts.
type Shape struct {
	Name    string `json:"name"`
	Blocks  int    `json:"blocks"`
	Embd    int    `json:"embd"`
	FFN     int    `json:"ffn"`
	Heads   int    `json:"heads"`
	KVHeads int    `json:"kv_heads"`
	Vocab   int    `json:"vocab"`
}

// llama3x8B is the shape the projection is made for.
var llama3x8B = Shape{Name: "Llama-3-8B", Blocks: 32, Embd: 4096, FFN: 14336, Heads: 32, KVHeads: 8, Vocab: 128256}

// blockMatmul returns the matmul weights of one block:
//
//	q, o: e²;  k, v: e·e_kv (e_kv = e/heads·kv_heads);  gate, up, down: e·ffn
func (s Shape) blockMatmul() float64 {
	e := float64(s.Embd)
	kv := e / float64(s.Heads) * float64(s.KVHeads)
	return 2*e*e + 2*e*kv + 3*e*float64(s.FFN)
}

// params returns every weight: the blocks (matmuls and two norms), the
// token embeddings, the output layer and the output norm.
func (s Shape) params() float64 {
	e := float64(s.Embd)
	return float64(s.Blocks)*(s.blockMatmul()+2*e) + 2*float64(s.Vocab)*e + e
}

// modelFLOPs reads, from a GGUF file, the matmul weights of block 0
// (every 2-D blk.0 tensor) and of the output layer (output.weight, or the
// token embeddings when they are tied), the element count of block 0 and
// the bytes of every tensor.
func modelFLOPs(f *gguf.File) (block, output float64, blockElems, tensorBytes int64) {
	out := "output.weight"
	if _, ok := f.Tensor(out); !ok {
		out = "token_embd.weight"
	}
	for _, t := range f.Tensors {
		tensorBytes += int64(t.Size())
		switch {
		case strings.HasPrefix(t.Name, "blk.0."):
			blockElems += int64(t.Elements())
			if len(t.Dims) == 2 {
				block += float64(t.Elements())
			}
		case t.Name == out:
			output = float64(t.Elements())
		}
	}
	return block, output, blockElems, tensorBytes
}

// project projects a default merge removing remove blocks of a model
// of shape s on this machine. Decodes take tokens × FLOPs/token at the
// measured calibration FLOP rate, FLOPs/token being 2 × the matmul weights
// the decode runs (attention scores, under 1 % at 256 tokens, are left
// out): the calibration pass and the alignment passes run every loaded
// block (a removed block stays in the graph as an identity; a pass stops
// after the deepest candidate, taken as the last block) without the output
// layer; held-back scoring runs every block and the output layer. The Go
// work of the search (alignment statistics XᵀX, XᵀY and the Cholesky solve;
// folding alignments into ffn_down) is what the child's steps took beyond
// their decodes, scaled by its FLOPs; load, SHA-256 and verification
// scale with the file size, the rewrite runs at the measured MB/s.
func project(bm *Merge, s Shape, remove int, blockMat, outMat float64, fileBytes int64, blocks int, model *Model) *Projection {
	L := float64(blocks)
	T := float64(bm.Ctx)
	rate := float64(bm.CalibTokens) / bm.CalibSeconds * 2 * L * blockMat
	p := &Projection{Shape: s, Params: s.params(), Bytes: 2 * s.params(), Remove: remove, FLOPRate: rate, Scale: map[string]string{}}
	sL, sBlock, sOut := float64(s.Blocks), s.blockMatmul(), float64(s.Vocab)*float64(s.Embd)
	nCal, nAlign := mergeDefault("samples"), float64(bm.AlignChunks)
	k := int(mergeDefault("candidates"))

	// The measured child: its decodes predicted at the same rate, the rest
	// of each step is Go work.
	embd, ffn := 0.0, 0.0
	if model != nil {
		embd, ffn = float64(model.Embd), float64(model.FFN)
	}
	rows := nAlign * (T - 1) // tokens per alignment pass after BOS
	goFit := func(d float64) float64 { return 3*d*d*rows + 7.0/3*d*d*d }
	// The step whose statistics came from the calibration pass made them
	// there: the child's calibration beyond the plain pass is fit work.
	alignGo := max(0, bm.ChildCalibSeconds-bm.CalibSeconds)
	var scoreGo, fitWork, editWork, heldDepth, heldLogits, passDepth float64
	passes := 0
	for _, st := range bm.Steps {
		if !st.Prefilled {
			passes++
			dec := T * 2 * st.PassDepth * L * blockMat / rate
			alignGo += max(0, st.AlignSeconds-dec)
			passDepth += st.PassDepth / nAlign
		}
		dec := T * 2 * (st.HeldDepth*L*blockMat + float64(st.HeldLogits)*outMat) / rate
		scoreGo += max(0, st.ScoreSeconds-dec)
		heldDepth += st.HeldDepth
		heldLogits += float64(st.HeldLogits)
		fitWork += float64(st.Candidates) * goFit(embd)
		editWork += float64(st.Scored+1) * 2 * embd * embd * ffn
	}
	nSteps := float64(max(len(bm.Steps), 1))
	depthPerStep, logitsPerStep := heldDepth/nSteps, heldLogits/nSteps
	prefilled := len(bm.Steps) - passes // steps whose statistics came from the calibration pass
	var fitWork8, editWork8 float64
	// As merge bounds the statistics: one block in float32.
	block8 := 4 * (s.blockMatmul() + 2*float64(s.Embd))
	limit := max(int(block8/float64(merge.AlignStatsBytes(s.Embd))), k, 1)
	for step := range remove {
		cands := min(s.Blocks-step-1, limit)
		fitWork8 += float64(cands) * goFit(float64(s.Embd))
		editWork8 += float64(min(k, cands)+1) * 2 * float64(s.Embd) * float64(s.Embd) * float64(s.FFN)
	}
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	outBytes := 2 * (p.Params - float64(remove)*(sBlock+2*float64(s.Embd)))
	mbps := float64(bm.RewriteBytes) / bm.RewriteSeconds
	other := max(0, bm.WallSeconds-bm.ChildCalibSeconds-bm.ChildSearchSeconds-bm.RewriteSeconds)
	add := func(name string, sec float64, note string) {
		p.Phases = append(p.Phases, Phase{Name: name, Seconds: sec, Note: note})
		p.Seconds += sec
	}
	calibSec := nCal * T * 2 * sL * sBlock / rate
	add("calibrate", calibSec, fmt.Sprintf("%.0f × %.0f tokens, %d blocks, no output layer", nCal, T, s.Blocks))
	// Steps after the first make a pass as often as the measured ones did
	// (every one for the search; --fast only when its fits run out).
	nPass := float64(max(remove-prefilled, 0))
	if n := len(bm.Steps); n > 1 {
		nPass = float64(remove-1) * float64(passes) / float64(n-1)
	}
	// The passes' depth as measured: the fraction of the blocks a pass
	// runs (it stops after the deepest candidate), per pass.
	frac := 1.0
	if passes > 0 {
		frac = passDepth / float64(passes)
	}
	add("alignment passes", nPass*nAlign*T*2*frac*sL*sBlock/rate,
		fmt.Sprintf("%.0f × %.0f × %.0f tokens, %.0f %% of the blocks as measured (step 1's is the calibration pass; a pass stops after the deepest candidate)", nPass, nAlign, T, 100*frac))
	add("alignment fits", alignGo*ratio(fitWork8, fitWork),
		fmt.Sprintf("XᵀX, XᵀY (ggml), Cholesky: %d candidates per step (one block of float32), measured %.1f s scaled by FLOPs", limit, alignGo))
	add("held-back scoring", float64(remove)*T*2*(depthPerStep*sL*sBlock+logitsPerStep*sOut)/rate,
		fmt.Sprintf("%d steps × %.1f chunks with logits (%d candidates, the race stops losers, as measured) × %.0f tokens, their blocks %.1f whole-model decodes (resumed at each candidate's first changed block, as a fraction of depth as measured)", remove, logitsPerStep, k, T, depthPerStep))
	add("weight edits, losses (Go)", scoreGo*ratio(editWork8, editWork),
		fmt.Sprintf("alignments folded into ffn_down, next-token losses: measured %.1f s scaled by FLOPs", scoreGo))
	if bm.ChildHealSeconds > 0 {
		// Healing decodes the held-back chunks from each refitted block to
		// the logits: per refit, FLOPs per token as scoring's; refits ∝
		// blocks. Its ridge solves (Cholesky of n_ff unknowns, n_embd
		// right-hand sides) grow as n_ff³/3 + n_ff²·n_embd.
		refits := sL / L
		solve := func(ffn, embd float64) float64 { return ffn*ffn*ffn/3 + ffn*ffn*embd }
		solved := bm.HealSolveSeconds
		if ffn == 0 { // the measured model's shape unknown: all as decodes
			solved = 0
		}
		dec := max(0, bm.ChildHealSeconds-solved)
		add("healing: decodes", dec*(sL*sBlock+sOut)/(L*blockMat+outMat)*refits,
			fmt.Sprintf("%d blocks refitted, measured %.1f s scaled by FLOPs per token and by the blocks", bm.HealRefits, dec))
		if solved > 0 {
			add("healing: ridge solves", solved*ratio(solve(float64(s.FFN), float64(s.Embd)), solve(ffn, embd))*refits,
				fmt.Sprintf("measured %.1f s scaled by n_ff³/3 + n_ff²·n_embd and by the blocks", solved))
		}
	}
	rwSec := outBytes / mbps
	add("rewrite", rwSec, fmt.Sprintf("%s at the measured %.0f MB/s", files.Human(uint64(outBytes)), mbps/1e6))
	add("load, SHA-256, verify", other*ratio(p.Bytes, float64(fileBytes)),
		fmt.Sprintf("measured %.1f s scaled by file size", other))
	p.Baseline = calibSec + rwSec
	p.Ratio = ratio(p.Seconds, p.Baseline)
	p.Method = "decodes: tokens × 2 × matmul weights / measured calibration FLOP/s; Go work: the child's remainder scaled by its FLOPs; I/O by bytes"
	p.Scale["flop_per_token_calibration"] = fmt.Sprintf("%.4g (measured model %.4g)", 2*sL*sBlock, 2*L*blockMat)
	p.Scale["flop_per_token_scoring"] = fmt.Sprintf("%.4g (measured model %.4g)", 2*(sL*sBlock+sOut), 2*(L*blockMat+outMat))
	p.Scale["fit_work"] = fmt.Sprintf("%.4g (measured model %.4g)", fitWork8, fitWork)
	p.Scale["edit_work"] = fmt.Sprintf("%.4g (measured model %.4g)", editWork8, editWork)
	return p
}
