package pipeline

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/merge"
)

// pass accumulates one alignment pass over the model as it is now, from
// the capture hook of any decode of the calibration chunks (a session of
// the search, or the calibration pass itself, see Prefill):
//
//   - for each candidate drop j with statistics (current blocks, j ≥ 1),
//     the normal equations of aligning block j−1 to reproduce block j's
//     output (merge.AlignStats), on the chunks [lo, hi);
//   - for every current block j ≥ 1, the mean cosine between its input
//     (block j−1's output) and its output, on the chunks [0, hi): its Block
//     Influence and angular distance.
//
// The hook sees the blocks in order, so only the previous current block's
// rows are kept: memory is the statistics plus a few blocks of rows.
type pass struct {
	d, t, skip int
	lo, hi     int         // chunk window of the statistics
	phys       []int       // current block → loaded block
	cur        map[int]int // loaded block → current block
	stats      map[int]*merge.AlignStats
	cos        [][3]float64      // per current block: Σcos, Σarccos/π, rows
	origH      map[int][]float32 // target's loaded block → the original model's rows (Config.Original)
	useOrig    bool              // the target H comes from origH
	first      int
	count      int
	fLayer     int // loaded block whose ffn_inp f holds (−1: none in this decode)
	prevValid  bool
	f, prevF   []float32
	out, prevO []float32
	x, y       []float32
	err        error
}

// newPass starts a pass over current blocks phys with statistics for drops
// (each taken from stats), on the chunks [lo, hi).
func newPass(d, t, skip int, phys []int, lo, hi int) *pass {
	p := &pass{d: d, t: t, skip: skip, lo: lo, hi: hi, phys: phys, cur: map[int]int{}, stats: map[int]*merge.AlignStats{},
		cos: make([][3]float64, len(phys)), fLayer: -1}
	for c, ph := range phys {
		p.cur[ph] = c
	}
	return p
}

// deepest returns the last loaded block a decode must run for this pass.
func (p *pass) deepest() int { return p.phys[len(p.phys)-1] }

// before is the hook called before each decode of chunks [first, first+count).
func (p *pass) before(first, count int) {
	p.first, p.count, p.fLayer, p.prevValid = first, count, -1, false
}

// window returns the chunks of the current decode, as offsets within it,
// that fall in [lo, hi) (stats) and in [0, hi) (signals).
func (p *pass) window() (s0, s1, c1 int) {
	s0 = max(p.lo, p.first) - p.first
	s1 = min(p.hi, p.first+p.count) - p.first
	c1 = min(p.hi, p.first+p.count) - p.first
	return max(s0, 0), max(s1, 0), max(c1, 0)
}

// rows appends to dst[:0] the rows of chunks [c0, c1) of the decode that
// the fit uses (fitRows).
func (p *pass) rows(data, dst []float32, c0, c1 int) []float32 {
	return fitRows(data, dst, p.d, p.t, p.skip, c0, c1)
}

// fitRows appends to dst[:0] the rows of chunks [c0, c1) of a captured
// tensor (chunks of t tokens, d values a row) that the alignment fits: all
// but each chunk's first skip rows (BOS, an outlier in many models).
func fitRows(data, dst []float32, d, t, skip, c0, c1 int) []float32 {
	dst = dst[:0]
	for c := c0; c < c1; c++ {
		dst = append(dst, data[(c*t+skip)*d:(c+1)*t*d]...)
	}
	return dst
}

// capture is the capture hook.
func (p *pass) capture(tn cgo.Tensor) bool {
	if p.err != nil {
		return false
	}
	if tn.Layer < 0 {
		return true
	}
	c, ok := p.cur[tn.Layer]
	if !ok {
		return true // a removed block (an identity)
	}
	if tn.Cols != p.d || tn.Rows != p.count*p.t {
		p.err = fmt.Errorf("capture: layer %d has %d×%d rows, want %d×%d", tn.Layer, tn.Rows, tn.Cols, p.count*p.t, p.d)
		return false
	}
	_, _, c1 := p.window()
	if c1 == 0 {
		return true
	}
	switch tn.Kind {
	case cgo.FFNInput:
		p.f = p.rows(tn.Data, p.f, 0, c1)
		p.fLayer = tn.Layer
	case cgo.BlockOutput:
		p.out = p.rows(tn.Data, p.out, 0, c1)
		if c > 0 && p.prevValid {
			p.addCos(c)
			if st := p.stats[c]; st != nil {
				if err := p.addStats(st, tn.Layer); err != nil {
					p.err = err
					return false
				}
			}
		}
		if _, survivor := p.stats[c+1]; survivor && p.fLayer != tn.Layer {
			p.err = fmt.Errorf("architecture graph does not name ffn_inp-%d: the alignment needs it (use --align none)", tn.Layer)
			return false
		}
		p.f, p.prevF = p.prevF, p.f
		p.out, p.prevO = p.prevO, p.out
		p.prevValid = true
	}
	return true
}

// addCos adds the cosines between current block c's input and output.
func (p *pass) addCos(c int) {
	d := p.d
	acc := &p.cos[c]
	for r := range len(p.out) / d {
		a, b := p.prevO[r*d:(r+1)*d], p.out[r*d:(r+1)*d]
		var ab, aa, bb float64
		for k := range a {
			ab += float64(a[k]) * float64(b[k])
			aa += float64(a[k]) * float64(a[k])
			bb += float64(b[k]) * float64(b[k])
		}
		cs := 0.0
		if aa > 0 && bb > 0 {
			cs = max(-1, min(1, ab/math.Sqrt(aa*bb)))
		}
		acc[0] += cs
		acc[1] += math.Acos(cs) / math.Pi
		acc[2]++
	}
}

// addStats adds the decode's rows in [lo, hi) to the alignment of current
// block c−1 (rows prevF, prevO) to the output of loaded block layer.
func (p *pass) addStats(st *merge.AlignStats, layer int) error {
	s0, s1, _ := p.window()
	if s1 <= s0 {
		return nil
	}
	d, per := p.d, p.t-p.skip
	a, b := s0*per*d, s1*per*d
	h := p.out[a:b]
	if p.useOrig {
		h = p.origH[layer][a:b]
	}
	f, prev := p.prevF[a:b], p.prevO[a:b]
	p.x = slices.Grow(p.x[:0], len(h))[:len(h)]
	p.y = slices.Grow(p.y[:0], len(h))[:len(h)]
	for i := range h {
		p.x[i] = prev[i] - f[i]
		p.y[i] = h[i] - f[i]
	}
	st.AddTargetNorm(h)
	return st.Add(p.x, p.y, len(h)/d)
}

// bi returns each current block's Block Influence so far (0 for block 0
// and blocks not seen).
func (p *pass) bi() []float64 {
	out := make([]float64, len(p.cos))
	for c, v := range p.cos {
		if v[2] > 0 {
			out[c] = 1 - v[0]/v[2]
		}
	}
	return out
}

// signals returns BI and angular distance per current block j ≥ 1.
func (p *pass) signals() map[int][2]float64 {
	sig := map[int][2]float64{}
	for c, v := range p.cos {
		if c > 0 && v[2] > 0 {
			sig[c] = [2]float64{1 - v[0]/v[2], v[1] / v[2]}
		}
	}
	return sig
}

// lowestBI returns the n candidates j ≥ 1 of lowest BI, in block order
// (all of them when n ≥ their number).
func lowestBI(bi []float64, n int) []int {
	var drops []int
	for j := 1; j < len(bi); j++ {
		drops = append(drops, j)
	}
	if len(drops) <= n {
		return drops
	}
	sort.SliceStable(drops, func(a, b int) bool { return bi[drops[a]] < bi[drops[b]] })
	drops = drops[:n]
	slices.Sort(drops)
	return drops
}

// Prefill is the first step's alignment pass made inside the calibration
// pass, which decodes the same chunks through the same, still unmodified
// model: the first step of Search then decodes nothing before scoring.
//
// When the statistics budget holds every candidate, they use chunks
// [0, n). Otherwise the first prefillWarm chunks only measure each block's
// Block Influence, the candidates of lowest BI are chosen, and the
// statistics use chunks [warm, warm+n); AlignChunks says which.
type Prefill struct {
	p       *pass
	want    int // candidates the budget holds
	chosen  bool
	drops   []int
	scratch *merge.AlignScratch
	gram    *cgo.Gram
	threads int
	seen    int // chunks of [lo, hi) decoded
}

// prefillWarm is the number of chunks whose BI picks the candidates when
// the statistics budget does not hold them all.
const prefillWarm = 8

// NewPrefill prepares the pass for a calibration over chunks chunks of t
// tokens decoded seqs at a time, with alignChunks alignment chunks and
// statistics of at most maxStatsBytes (0: 1 GiB) but for at least
// minCandidates candidates (Config.Candidates, as Searcher.maxCandidates),
// their products on threads threads. Close frees it unless a search took
// it over.
func NewPrefill(m *cgo.Model, t, chunks, alignChunks, seqs, threads int, maxStatsBytes int64, minCandidates int) *Prefill {
	d, L := m.NEmbd(), m.NLayer()
	if maxStatsBytes <= 0 {
		maxStatsBytes = 1 << 30
	}
	want := max(int(maxStatsBytes/merge.AlignStatsBytes(d)), minCandidates, 1)
	lo := 0
	if want < L-1 {
		lo = (prefillWarm + seqs - 1) / seqs * seqs
		if lo >= chunks {
			lo = 0
		}
	}
	n := max(1, min(alignChunks, chunks-lo))
	skip := 0
	if m.AddBOS() {
		skip = 1
	}
	phys := make([]int, L)
	for i := range phys {
		phys[i] = i
	}
	pf := &Prefill{p: newPass(d, t, skip, phys, lo, lo+n), want: want, threads: threads}
	if lo == 0 {
		pf.choose()
	}
	return pf
}

// choose gives statistics to the candidates of lowest BI so far.
func (pf *Prefill) choose() {
	pf.chosen = true
	pf.drops = lowestBI(pf.p.bi(), pf.want)
	pf.scratch, pf.gram = newScratch(pf.p.d, pf.threads)
	for _, j := range pf.drops {
		pf.p.stats[j] = merge.NewAlignStatsShared(pf.p.d, pf.scratch)
	}
}

// AlignChunks returns the chunks of the calibration that the statistics
// use, which every later alignment pass must decode too.
func (pf *Prefill) AlignChunks(chunks [][]int32) [][]int32 { return chunks[pf.p.lo:pf.p.hi] }

// Before is the calibration's hook before each decode of chunks
// [first, first+count).
func (pf *Prefill) Before(first, count int) {
	if !pf.chosen && first >= pf.p.lo {
		pf.choose()
	}
	pf.p.before(first, count)
	s0, s1, _ := pf.p.window()
	pf.seen += max(s1-s0, 0)
}

// Capture is the calibration's capture hook (block outputs and ffn_inp).
// It never stops the calibration: a failed prefill (Err) only means that
// the first step makes its own pass.
func (pf *Prefill) Capture(tn cgo.Tensor) bool {
	pf.p.capture(tn)
	return true
}

// Close frees what a search did not take over. It is nil-safe.
func (pf *Prefill) Close() {
	if pf != nil {
		pf.gram.Close()
		pf.gram = nil
	}
}

// newScratch returns a scratch for the statistics whose products run on
// ggml's CPU device (gonum's when that cannot start), and the Gram to
// close.
func newScratch(d, threads int) (*merge.AlignScratch, *cgo.Gram) {
	sc := merge.NewAlignScratch(d)
	g, err := cgo.NewGram(threads)
	if err != nil {
		return sc, nil
	}
	sc.Gram = g.Compute
	return sc, g
}

// Err returns the error that stopped the pass, if any.
func (pf *Prefill) Err() error { return pf.p.err }

// done reports whether the pass saw all its chunks without error.
func (pf *Prefill) done() bool { return pf.p.err == nil && pf.chosen && pf.seen == pf.p.hi-pf.p.lo }

// result returns the candidates, their statistics and every block's
// signals.
func (pf *Prefill) result() ([]int, map[int]*merge.AlignStats, map[int][2]float64) {
	return pf.drops, pf.p.stats, pf.p.signals()
}
