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
//   - for each candidate j with statistics (current blocks, j ≥ 1), the
//     removal of the run of blocks j … j+run−1 (run: the architecture's
//     period, 1 but for an index-derived pattern), the normal equations of
//     aligning block j−1 to reproduce block j+run−1's output
//     (merge.AlignStats), on the chunks [lo, hi);
//   - for every current block j ≥ 1, the mean cosine between its input
//     (block j−1's output) and its output, on the chunks [0, hi): its Block
//     Influence and angular distance.
//
// The hook sees the blocks in order, so only the last run+1 current
// blocks' rows are kept: memory is the statistics plus a few blocks of
// rows. A block's stream before its FFN, F, is captured as the graph names
// it (cgo.FFNInput), or where it is unnamed (phi3) from the FFN's
// contribution X (cgo.FFNOutput): F = l_out − X.
type pass struct {
	d, t, skip int
	run        int         // blocks removed per candidate
	lo, hi     int         // chunk window of the statistics
	phys       []int       // current block → loaded block
	cur        map[int]int // loaded block → current block
	stats      map[int]*merge.AlignStats
	cos        [][3]float64      // per current block: Σcos, Σarccos/π, rows
	origH      map[int][]float32 // target's loaded block → the original model's rows (Config.Original)
	useOrig    bool              // the target H comes from origH
	first      int
	count      int
	fLayer     int  // loaded block whose F (or X) slot[next].f holds (−1: none in this decode)
	fromX      bool // slot[next].f holds X, not F
	ring       []slot
	x, y       []float32
	err        error
}

// slot holds one current block's rows in this decode: its stream before
// the FFN and its output.
type slot struct {
	block  int // current block, −1: none
	f, out []float32
}

// newPass starts a pass over current blocks phys with statistics for
// candidates (each taken from stats) removing run blocks each, on the
// chunks [lo, hi).
func newPass(d, t, skip, run int, phys []int, lo, hi int) *pass {
	p := &pass{d: d, t: t, skip: skip, run: max(run, 1), lo: lo, hi: hi, phys: phys, cur: map[int]int{}, stats: map[int]*merge.AlignStats{},
		cos: make([][3]float64, len(phys)), fLayer: -1}
	p.ring = make([]slot, p.run+1)
	for c, ph := range phys {
		p.cur[ph] = c
	}
	return p
}

// deepest returns the last loaded block a decode must run for this pass.
func (p *pass) deepest() int { return p.phys[len(p.phys)-1] }

// before is the hook called before each decode of chunks [first, first+count).
func (p *pass) before(first, count int) {
	p.first, p.count, p.fLayer = first, count, -1
	for i := range p.ring {
		p.ring[i].block = -1
	}
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

// seed gives current block c (≥ 0), which this decode does not run, the
// rows of its output: the streams entering block c+1, one T × d slice per
// chunk of the decode (a pass that starts at block c+1).
func (p *pass) seed(c int, in [][]float32) {
	if c < 0 {
		return
	}
	_, _, c1 := p.window()
	sl := p.slotOf(c)
	sl.out = sl.out[:0]
	for i := range min(c1, len(in)) {
		sl.out = append(sl.out, in[i][p.skip*p.d:]...)
	}
	sl.f, sl.block = sl.f[:0], c
}

// slotOf returns the ring slot of current block c.
func (p *pass) slotOf(c int) *slot { return &p.ring[c%len(p.ring)] }

// seen returns current block c's rows when this decode captured them.
func (p *pass) seen(c int) *slot {
	if c < 0 {
		return nil
	}
	if sl := p.slotOf(c); sl.block == c {
		return sl
	}
	return nil
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
	sl := p.slotOf(c)
	switch tn.Kind {
	case cgo.FFNInput, cgo.FFNOutput:
		sl.f = p.rows(tn.Data, sl.f, 0, c1)
		p.fLayer, p.fromX = tn.Layer, tn.Kind == cgo.FFNOutput
	case cgo.BlockOutput:
		sl.out = p.rows(tn.Data, sl.out, 0, c1)
		hasF := p.fLayer == tn.Layer
		if hasF && p.fromX {
			for i, o := range sl.out {
				sl.f[i] = o - sl.f[i] // F = l_out − X
			}
		}
		if !hasF {
			sl.f = sl.f[:0]
		}
		sl.block = c
		if prev := p.seen(c - 1); prev != nil {
			p.addCos(c, prev.out, sl.out)
		}
		// The candidate whose run ends here: survivor c−run.
		if j := c - p.run + 1; p.stats[j] != nil {
			if sv := p.seen(j - 1); sv != nil {
				if err := p.addStats(p.stats[j], sv, sl.out, tn.Layer); err != nil {
					p.err = err
					return false
				}
			}
		}
		if _, survivor := p.stats[c+1]; survivor && !hasF {
			p.err = fmt.Errorf("the architecture's graph does not name blk %d's stream before its FFN, which the alignment needs (use --align none)", tn.Layer)
			return false
		}
	}
	return true
}

// addCos adds the cosines between current block c's input in and output
// out.
func (p *pass) addCos(c int, in, out []float32) {
	d := p.d
	acc := &p.cos[c]
	for r := range len(out) / d {
		cs := merge.Cosine64(in[r*d:(r+1)*d], out[r*d:(r+1)*d])
		acc[0] += cs
		acc[1] += math.Acos(cs) / math.Pi
		acc[2]++
	}
}

// addStats adds the decode's rows in [lo, hi) to the alignment of the
// survivor sv (its F and output) to out, the output of loaded block layer.
func (p *pass) addStats(st *merge.AlignStats, sv *slot, out []float32, layer int) error {
	s0, s1, _ := p.window()
	if s1 <= s0 {
		return nil
	}
	d, per := p.d, p.t-p.skip
	a, b := s0*per*d, s1*per*d
	h := out[a:b]
	if p.useOrig {
		h = p.origH[layer][a:b]
	}
	f, prev := sv.f[a:b], sv.out[a:b]
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

// lowestBI returns the n candidates j ≥ 1 (runs of run blocks j …
// j+run−1 within the blocks) of lowest BI, summed over the run, in block
// order (all of them when n ≥ their number).
func lowestBI(bi []float64, n, run int) []int {
	var drops []int
	score := map[int]float64{}
	for j := 1; j+run <= len(bi); j++ {
		drops = append(drops, j)
		for k := j; k < j+run; k++ {
			score[j] += bi[k]
		}
	}
	if len(drops) <= n {
		return drops
	}
	sort.SliceStable(drops, func(a, b int) bool { return score[drops[a]] < score[drops[b]] })
	drops = drops[:n]
	slices.Sort(drops)
	return drops
}
