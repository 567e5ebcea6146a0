package pipeline

import (
	"slices"

	"github.com/mka-gguf/mka-gguf/cgo"
	"github.com/mka-gguf/mka-gguf/merge"
	"github.com/mka-gguf/mka-gguf/merge/arch"
)

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
	// nStreams is how many streams of the alignment chunks to keep for
	// the second step's pass; byOut the loaded block whose output each
	// enters.
	nStreams int
	byOut    map[int]*passStream
}

// prefillWarm is the number of chunks whose BI picks the candidates when
// the statistics budget does not hold them all.
const prefillWarm = 8

// NewPrefill prepares the pass for a calibration of m (whose blocks b
// describes) over chunks chunks of t
// tokens decoded seqs at a time, with alignChunks alignment chunks and
// statistics of at most maxStatsBytes (0: 1 GiB) but for at least
// minCandidates candidates (Config.Candidates, as Searcher.maxCandidates),
// their products on threads threads, and the streams entering some blocks
// for the second step's pass (as many as streamBytes holds, at least one;
// none for 0; Config.StreamBytes). Close frees it unless a search took it
// over.
func NewPrefill(m *cgo.Model, b *arch.Model, t, chunks, alignChunks, seqs, threads int, maxStatsBytes, streamBytes int64, minCandidates int) *Prefill {
	d, L, run := m.NEmbd(), m.NLayer(), max(1, b.Period)
	if maxStatsBytes <= 0 {
		maxStatsBytes = 1 << 30
	}
	want := max(int(maxStatsBytes/merge.AlignStatsBytes(d)), minCandidates, 1)
	lo := 0
	if want < L-run {
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
	pf := &Prefill{p: newPass(d, t, skip, run, phys, lo, lo+n), want: want, threads: threads}
	if streamBytes > 0 {
		pf.nStreams = max(1, int(streamBytes/(int64(n)*int64(t)*int64(d)*4)))
	}
	if lo == 0 {
		pf.choose()
	}
	return pf
}

// choose gives statistics to the candidates of lowest BI so far.
func (pf *Prefill) choose() {
	pf.chosen = true
	pf.drops = lowestBI(pf.p.bi(), pf.want, pf.p.run)
	pf.scratch, pf.gram = newScratch(pf.p.d, pf.threads)
	for _, j := range pf.drops {
		pf.p.stats[j] = merge.NewAlignStats(pf.p.d, pf.scratch)
	}
	// After step 1 removes candidate j, step 2's pass starts entering
	// block j−2 (Searcher.keepAt): half the streams go there. A later
	// pass may need to start before any block, once its BI moves a new
	// candidate into the set, and only this pass decodes them all: the
	// other half is spread evenly over the depths.
	var at, all []int
	for _, j := range pf.drops {
		at = append(at, j-2)
	}
	for b := 1; b+2+pf.p.run <= len(pf.p.phys); b++ { // b = j−2 for every candidate j
		all = append(all, b)
	}
	keep := spread(at, (pf.nStreams+1)/2)
	for i, n := 0, pf.nStreams-len(keep); i < n && len(all) > 0; i++ {
		keep = append(keep, all[(i+1)*len(all)/(n+1)])
	}
	pf.byOut = map[int]*passStream{}
	for _, b := range keep {
		pf.byOut[b-1] = &passStream{block: b, rows: make([][]float32, pf.p.hi-pf.p.lo)}
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

// Capture is the calibration's capture hook (block outputs and each
// block's stream before its FFN).
// It never stops the calibration: a failed prefill (Err) only means that
// the first step makes its own pass.
func (pf *Prefill) Capture(tn cgo.Tensor) bool {
	pf.p.capture(tn)
	if st := pf.byOut[tn.Layer]; st != nil && tn.Kind == cgo.BlockOutput && pf.p.err == nil {
		p := pf.p
		s0, s1, _ := p.window()
		n := p.t * p.d
		for i := s0; i < s1; i++ {
			st.rows[p.first+i-p.lo] = slices.Clone(tn.Data[i*n : (i+1)*n])
		}
	}
	return true
}

// streams returns the complete streams the calibration pass kept.
func (pf *Prefill) streams() []*passStream {
	var out []*passStream
	for _, st := range pf.byOut {
		out = append(out, st)
	}
	pf.byOut = nil
	return complete(out)
}

// Close frees what a search did not take over. It is nil-safe.
func (pf *Prefill) Close() {
	if pf != nil {
		pf.gram.Close()
		pf.gram, pf.byOut = nil, nil
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
