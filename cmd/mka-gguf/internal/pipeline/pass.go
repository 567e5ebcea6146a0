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
