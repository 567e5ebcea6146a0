package merge

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// TensorPerm reorders one tensor of a block: output row r is source row
// Rows[r] (nil: rows unchanged), and within every row output column c is
// source column Cols[c] (nil: unchanged). A bias (one row) uses Cols.
//
// Rows index ne1 (the rows of ne0 values of GGUF's layout) and Cols index
// ne0.
type TensorPerm struct{ Rows, Cols []int }

// BlockPerm maps a block's tensor suffix ("ffn_gate.weight") to how that
// tensor is reordered; suffixes absent are unchanged.
type BlockPerm map[string]TensorPerm

// BlockTensors returns the float32 values and dims (ne0 first) of one of a
// block's tensors by suffix, and ok=false when the block has no such tensor.
type BlockTensors func(suffix string) (v []float32, dims []int, ok bool, err error)

// Tensor suffixes that MatchBlocks reads or permutes.
const (
	sfxGate    = "ffn_gate.weight"
	sfxUp      = "ffn_up.weight"
	sfxDown    = "ffn_down.weight"
	sfxGateB   = "ffn_gate.bias"
	sfxUpB     = "ffn_up.bias"
	sfxQ       = "attn_q.weight"
	sfxK       = "attn_k.weight"
	sfxV       = "attn_v.weight"
	sfxO       = "attn_output.weight"
	sfxQB      = "attn_q.bias"
	sfxKB      = "attn_k.bias"
	sfxVB      = "attn_v.bias"
	sfxQNorm   = "attn_q_norm.weight"
	sfxKNorm   = "attn_k_norm.weight"
	permChunk  = 256 // features per float64 panel in permScores
	permSource = "permute"
)

// MatchBlocks returns the permutation of block c's FFN neurons and attention
// KV groups that best matches block b (weight matching, Ainsworth, Hayase &
// Srinivasa, "Git Re-Basin", ICLR 2023), to apply to c before b and c are
// averaged. Applied to c it is function-preserving: every tensor indexed by
// a neuron or a head is reordered the same way.
//
// FFN (ff neurons, d = n_embd): with S[i][j] = ⟨gate_b row i, gate_c row j⟩
// + ⟨up_b row i, up_c row j⟩ + ⟨down_b column i, down_c column j⟩ (float64
// products and sums), pf maximises Σ_i S[i][pf[i]] exactly (LinearAssignment)
// and output neuron i of the permuted c is c's neuron pf[i]: ffn_gate.weight
// and ffn_up.weight get Rows = pf, ffn_down.weight Cols = pf, and
// ffn_gate.bias and ffn_up.bias (if c has them) Cols = pf. ffn_gate is
// optional (both blocks or neither); ffn_up and ffn_down are required once
// any FFN tensor exists. A block with none of them keeps its FFN.
//
// Attention (r = nHead/nHeadKV query heads per KV group, hd = rows of
// attn_q / nHead, hdV = rows of attn_v / nHeadKV): G[g][g'] sums, over
// attn_q (the r·hd rows of group g's query heads), attn_k and attn_v (the
// rows of KV head g) and attn_output (the columns of group g's query heads),
// the Frobenius inner products of b's group g slice with c's group g' slice;
// pg maximises Σ_g G[g][pg[g]]. Whole groups move (each with its r query
// heads in order, every head whole so RoPE pairs stay intact): attn_k/attn_v
// rows g·hd+i ← pg[g]·hd+i, attn_q rows of query head g·r+t ← those of
// pg[g]·r+t, attn_output columns likewise, and attn_q/k/v.bias columns as
// their weight's rows. attn_q_norm/attn_k_norm of hd values (shared by all
// heads) are unchanged; of nHead·hd (nHeadKV·hd) values, a norm over the
// whole projection, they follow the rows. Heads are left alone when
// nHeadKV == 1 or either block lacks one of attn_q, attn_k, attn_v,
// attn_output (weights). Norms, attn_output.bias and ffn_down.bias are
// never permuted.
//
// Cost: the FFN scores are a ff×ff float64 matrix (8·ff² bytes) from
// 2·ff²·(3d) flops (gonum's blocked Gemm on float64 panels), then an O(ff³)
// assignment. Errors wrap ErrAlign (shapes, dims differing between b and c,
// non-finite scores) or ErrUnsupported (an incomplete FFN) and name the
// tensor; errors of b or c are wrapped with the suffix.
func MatchBlocks(b, c BlockTensors, nHead, nHeadKV int) (BlockPerm, error) {
	if b == nil || c == nil {
		return nil, fmt.Errorf("%w: %s: nil BlockTensors", ErrAlign, permSource)
	}
	p := BlockPerm{}
	if err := matchFFN(b, c, p); err != nil {
		return nil, err
	}
	if err := matchHeads(b, c, nHead, nHeadKV, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Apply returns v (rows of perRow values) reordered by p (a new slice; v is
// unchanged): out[r·perRow+k] = v[Rows[r]·perRow+Cols[k]]. Rows must be nil
// or a permutation of 0..len(v)/perRow−1, Cols nil or a permutation of
// 0..perRow−1; otherwise the error wraps ErrAlign.
func (p TensorPerm) Apply(v []float32, perRow int) ([]float32, error) {
	if perRow <= 0 || len(v)%perRow != 0 {
		return nil, fmt.Errorf("%w: %s: %d values are not rows of %d", ErrAlign, permSource, len(v), perRow)
	}
	rows := len(v) / perRow
	if err := checkPerm(p.Rows, rows, "Rows"); err != nil {
		return nil, err
	}
	if err := checkPerm(p.Cols, perRow, "Cols"); err != nil {
		return nil, err
	}
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		src := r
		if p.Rows != nil {
			src = p.Rows[r]
		}
		s := v[src*perRow : (src+1)*perRow]
		d := out[r*perRow : (r+1)*perRow]
		if p.Cols == nil {
			copy(d, s)
			continue
		}
		for k, j := range p.Cols {
			d[k] = s[j]
		}
	}
	return out, nil
}

// checkPerm reports whether q is nil or a permutation of 0..n-1.
func checkPerm(q []int, n int, what string) error {
	if q == nil {
		return nil
	}
	if len(q) != n {
		return fmt.Errorf("%w: %s: %s has %d entries, want %d", ErrAlign, permSource, what, len(q), n)
	}
	seen := make([]bool, n)
	for i, j := range q {
		if j < 0 || j >= n {
			return fmt.Errorf("%w: %s: %s[%d] = %d is outside [0, %d)", ErrAlign, permSource, what, i, j, n)
		}
		if seen[j] {
			return fmt.Errorf("%w: %s: %s repeats %d", ErrAlign, permSource, what, j)
		}
		seen[j] = true
	}
	return nil
}

// LinearAssignment returns the permutation p of 0..n-1 maximising
// Σ_i w[i*n+p[i]] (w row-major n×n), exactly (Hungarian / shortest augmenting path, O(n³)).
//
// It is the shortest augmenting path method with row and column potentials
// (Jonker & Volgenant 1987, in the form of Crouse 2016) on the costs −w, in
// float64: one Dijkstra-like search per row over the reduced costs, so n =
// 4096 takes seconds on random weights. Ties are broken deterministically.
// n == 0 gives an empty slice. It panics with a "merge: " message if
// len(w) != n·n or a weight is NaN or infinite.
func LinearAssignment(w []float64, n int) []int {
	if n < 0 || len(w) != n*n {
		panic(fmt.Sprintf("merge: LinearAssignment: %d weights for n = %d", len(w), n))
	}
	for _, x := range w {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			panic("merge: LinearAssignment: weight is NaN or infinite")
		}
	}
	u := make([]float64, n) // row potentials
	v := make([]float64, n) // column potentials
	col4row := make([]int, n)
	row4col := make([]int, n)
	for i := range col4row {
		col4row[i], row4col[i] = -1, -1
	}
	path := make([]int, n)
	spc := make([]float64, n) // shortest path cost to each column
	remaining := make([]int, n)
	sr := make([]bool, n) // rows reached
	sc := make([]bool, n) // columns scanned
	inf := math.Inf(1)
	for cur := 0; cur < n; cur++ {
		for j := range remaining {
			remaining[j] = n - 1 - j
			spc[j] = inf
		}
		clear(sr)
		clear(sc)
		nRem := n
		minVal := 0.0
		i := cur
		sink := -1
		for sink < 0 {
			sr[i] = true
			row := w[i*n : i*n+n]
			ui := u[i]
			index := -1
			lowest := inf
			for it, j := range remaining[:nRem] {
				r := minVal - row[j] - ui - v[j] // reduced cost of −w
				if r < spc[j] {
					path[j] = i
					spc[j] = r
				}
				if s := spc[j]; s < lowest || (s == lowest && row4col[j] < 0) {
					lowest = s
					index = it
				}
			}
			if index < 0 { // only with overflowing weights
				panic("merge: LinearAssignment: weights overflow float64")
			}
			minVal = lowest
			j := remaining[index]
			if row4col[j] < 0 {
				sink = j
			} else {
				i = row4col[j]
			}
			sc[j] = true
			nRem--
			remaining[index] = remaining[nRem]
		}
		u[cur] += minVal
		for i := 0; i < n; i++ {
			if sr[i] && i != cur {
				u[i] += minVal - spc[col4row[i]]
			}
		}
		for j := 0; j < n; j++ {
			if sc[j] {
				v[j] -= minVal - spc[j]
			}
		}
		for j := sink; ; {
			i := path[j]
			row4col[j] = i
			col4row[i], j = j, col4row[i]
			if i == cur {
				break
			}
		}
	}
	return col4row
}

// permTensor is one fetched tensor.
type permTensor struct {
	v    []float32
	dims []int
}

// permFetch fetches one tensor of a block and checks its size.
func permFetch(get BlockTensors, which, suffix string) (permTensor, bool, error) {
	v, dims, ok, err := get(suffix)
	if err != nil {
		return permTensor{}, false, fmt.Errorf("%s: block %s: %s: %w", permSource, which, suffix, err)
	}
	if !ok {
		return permTensor{}, false, nil
	}
	n := 1
	for _, x := range dims {
		if x <= 0 {
			n = -1
			break
		}
		n *= x
	}
	if len(dims) == 0 || n != len(v) {
		return permTensor{}, false, fmt.Errorf("%w: %s: block %s: %s has %d values for dims %v",
			ErrAlign, permSource, which, suffix, len(v), dims)
	}
	return permTensor{v, dims}, true, nil
}

// permPair fetches a tensor from both blocks and checks that their dims agree.
func permPair(b, c BlockTensors, suffix string) (tb, tc permTensor, inB, inC bool, err error) {
	if tb, inB, err = permFetch(b, "b", suffix); err != nil {
		return
	}
	if tc, inC, err = permFetch(c, "c", suffix); err != nil {
		return
	}
	if inB && inC && !slices.Equal(tb.dims, tc.dims) {
		err = fmt.Errorf("%w: %s: %s has dims %v in block b and %v in block c",
			ErrAlign, permSource, suffix, tb.dims, tc.dims)
	}
	return
}

// permMatrix returns a tensor's ne0 and ne1 (dims past the second must be 1).
func permMatrix(t permTensor, suffix string) (ne0, ne1 int, err error) {
	for _, x := range t.dims[min(2, len(t.dims)):] {
		if x != 1 {
			return 0, 0, fmt.Errorf("%w: %s: %s has dims %v, want a matrix", ErrAlign, permSource, suffix, t.dims)
		}
	}
	ne0, ne1 = t.dims[0], 1
	if len(t.dims) > 1 {
		ne1 = t.dims[1]
	}
	return ne0, ne1, nil
}

// matchFFN adds the FFN neuron permutation to p.
func matchFFN(b, c BlockTensors, p BlockPerm) error {
	names := [3]string{sfxGate, sfxUp, sfxDown}
	var tb, tc [3]permTensor
	var inB, inC [3]bool
	anyFFN := false
	for k, s := range names {
		var err error
		if tb[k], tc[k], inB[k], inC[k], err = permPair(b, c, s); err != nil {
			return err
		}
		anyFFN = anyFFN || inB[k] || inC[k]
	}
	if !anyFFN {
		return nil
	}
	for k, s := range names {
		switch {
		case inB[k] && !inC[k]:
			return fmt.Errorf("%w: %s: %s is in block b but not in block c", ErrUnsupported, permSource, s)
		case inC[k] && !inB[k]:
			return fmt.Errorf("%w: %s: %s is in block c but not in block b", ErrUnsupported, permSource, s)
		case !inC[k] && k > 0:
			return fmt.Errorf("%w: %s: FFN without %s", ErrUnsupported, permSource, s)
		}
	}
	d, ff, err := permMatrix(tc[1], sfxUp)
	if err != nil {
		return err
	}
	if inC[0] {
		gd, gff, err := permMatrix(tc[0], sfxGate)
		if err != nil {
			return err
		}
		if gd != d || gff != ff {
			return fmt.Errorf("%w: %s: %s has dims %v, %s %v", ErrAlign, permSource, sfxGate, tc[0].dims, sfxUp, tc[1].dims)
		}
	}
	dff, dd, err := permMatrix(tc[2], sfxDown)
	if err != nil {
		return err
	}
	if dff != ff || dd != d {
		return fmt.Errorf("%w: %s: %s has dims %v, want [%d %d] for %s %v",
			ErrAlign, permSource, sfxDown, tc[2].dims, ff, d, sfxUp, tc[1].dims)
	}
	var biases []string
	for _, s := range []string{sfxGateB, sfxUpB} {
		t, ok, err := permFetch(c, "c", s)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if len(t.v) != ff {
			return fmt.Errorf("%w: %s: %s has %d values, want %d (ffn neurons)", ErrAlign, permSource, s, len(t.v), ff)
		}
		biases = append(biases, s)
	}

	var fs []permFeature
	if inC[0] {
		fs = append(fs, permFeature{b: tb[0].v, c: tc[0].v, width: d})
	}
	fs = append(fs,
		permFeature{b: tb[1].v, c: tc[1].v, width: d},
		permFeature{b: tb[2].v, c: tc[2].v, width: d, cols: true})
	s := permScores(fs, ff)
	if !permFinite(s) {
		return fmt.Errorf("%w: %s: FFN scores are not finite (NaN or Inf in the weights)", ErrAlign, permSource)
	}
	pf := LinearAssignment(s, ff)
	if inC[0] {
		p[sfxGate] = TensorPerm{Rows: pf}
	}
	p[sfxUp] = TensorPerm{Rows: pf}
	p[sfxDown] = TensorPerm{Cols: pf}
	for _, s := range biases {
		p[s] = TensorPerm{Cols: pf}
	}
	return nil
}

// permFeature is one tensor's share of the neuron features: n neurons of
// width values each, neuron j's value k at v[j·width+k] (rows) or v[k·n+j]
// (cols: neuron j is column j of width rows).
type permFeature struct {
	b, c  []float32
	width int
	cols  bool
}

// permScores returns S[i][j] = Σ over fs of ⟨b's neuron i, c's neuron j⟩,
// n×n row-major, accumulated in float64 panel by panel.
func permScores(fs []permFeature, n int) []float64 {
	s := blas64.General{Rows: n, Cols: n, Stride: n, Data: make([]float64, n*n)}
	bk := make([]float64, n*permChunk)
	ck := make([]float64, n*permChunk)
	for _, f := range fs {
		for k0 := 0; k0 < f.width; k0 += permChunk {
			kc := min(permChunk, f.width-k0)
			permFill(bk, f.b, f, n, k0, kc)
			permFill(ck, f.c, f, n, k0, kc)
			a := blas64.General{Rows: n, Cols: kc, Stride: kc, Data: bk[:n*kc]}
			c := blas64.General{Rows: n, Cols: kc, Stride: kc, Data: ck[:n*kc]}
			blas64.Gemm(blas.NoTrans, blas.Trans, 1, a, c, 1, s)
		}
	}
	return s.Data
}

// permFill writes features k0..k0+kc-1 of the n neurons of v into dst (n×kc).
func permFill(dst []float64, v []float32, f permFeature, n, k0, kc int) {
	if f.cols {
		for k := 0; k < kc; k++ {
			src := v[(k0+k)*n : (k0+k+1)*n]
			for j, x := range src {
				dst[j*kc+k] = float64(x)
			}
		}
		return
	}
	for j := 0; j < n; j++ {
		src := v[j*f.width+k0 : j*f.width+k0+kc]
		d := dst[j*kc : (j+1)*kc]
		for k, x := range src {
			d[k] = float64(x)
		}
	}
}

func permFinite(s []float64) bool {
	for _, x := range s {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// permDot is Σ a[i]·b[i] in float64.
func permDot(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// matchHeads adds the KV-group permutation to p.
func matchHeads(b, c BlockTensors, nHead, nKV int, p BlockPerm) error {
	if nKV == 1 {
		return nil
	}
	names := [4]string{sfxQ, sfxK, sfxV, sfxO}
	var tb, tc [4]permTensor
	for k, s := range names {
		var inB, inC bool
		var err error
		if tb[k], tc[k], inB, inC, err = permPair(b, c, s); err != nil {
			return err
		}
		if !inB || !inC {
			return nil // not llama-like attention: leave the heads alone
		}
	}
	if nHead <= 0 || nKV <= 0 || nHead%nKV != 0 {
		return fmt.Errorf("%w: %s: %d heads do not form %d KV groups", ErrAlign, permSource, nHead, nKV)
	}
	r := nHead / nKV
	d, qRows, err := permMatrix(tc[0], sfxQ)
	if err != nil {
		return err
	}
	if qRows%nHead != 0 {
		return fmt.Errorf("%w: %s: %s has %d rows, not a multiple of %d heads", ErrAlign, permSource, sfxQ, qRows, nHead)
	}
	hd := qRows / nHead
	kd, kRows, err := permMatrix(tc[1], sfxK)
	if err != nil {
		return err
	}
	if kd != d || kRows != nKV*hd {
		return fmt.Errorf("%w: %s: %s has dims %v, want [%d %d] (%d KV heads of %d)",
			ErrAlign, permSource, sfxK, tc[1].dims, d, nKV*hd, nKV, hd)
	}
	vd, vRows, err := permMatrix(tc[2], sfxV)
	if err != nil {
		return err
	}
	if vd != d || vRows%nKV != 0 {
		return fmt.Errorf("%w: %s: %s has dims %v, want [%d m·%d]", ErrAlign, permSource, sfxV, tc[2].dims, d, nKV)
	}
	hdV := vRows / nKV
	oCols, od, err := permMatrix(tc[3], sfxO)
	if err != nil {
		return err
	}
	if oCols != nHead*hdV || od != d {
		return fmt.Errorf("%w: %s: %s has dims %v, want [%d %d]", ErrAlign, permSource, sfxO, tc[3].dims, nHead*hdV, d)
	}

	qmap := make([]int, nHead*hd)
	kmap := make([]int, nKV*hd)
	vmap := make([]int, nKV*hdV)
	omap := make([]int, nHead*hdV)
	extra := map[string][]int{}
	for _, e := range []struct {
		s      string
		full   []int
		shared bool // hd values shared by all heads: unchanged
	}{{sfxQB, qmap, false}, {sfxKB, kmap, false}, {sfxVB, vmap, false}, {sfxQNorm, qmap, true}, {sfxKNorm, kmap, true}} {
		t, ok, err := permFetch(c, "c", e.s)
		if err != nil {
			return err
		}
		switch {
		case !ok || (e.shared && len(t.v) == hd):
		case len(t.v) == len(e.full):
			extra[e.s] = e.full
		default:
			return fmt.Errorf("%w: %s: %s has %d values, want %d", ErrAlign, permSource, e.s, len(t.v), len(e.full))
		}
	}

	g := make([]float64, nKV*nKV)
	qn, kn, vn, on, oRow := r*hd*d, hd*d, hdV*d, r*hdV, nHead*hdV
	parallelFor(nKV*nKV, func(idx int) {
		x, y := idx/nKV, idx%nKV
		s := permDot(tb[0].v[x*qn:(x+1)*qn], tc[0].v[y*qn:(y+1)*qn])
		s += permDot(tb[1].v[x*kn:(x+1)*kn], tc[1].v[y*kn:(y+1)*kn])
		s += permDot(tb[2].v[x*vn:(x+1)*vn], tc[2].v[y*vn:(y+1)*vn])
		for k := 0; k < d; k++ {
			row := k * oRow
			s += permDot(tb[3].v[row+x*on:row+(x+1)*on], tc[3].v[row+y*on:row+(y+1)*on])
		}
		g[idx] = s
	})
	if !permFinite(g) {
		return fmt.Errorf("%w: %s: attention scores are not finite (NaN or Inf in the weights)", ErrAlign, permSource)
	}
	pg := LinearAssignment(g, nKV)
	for x, y := range pg {
		for i := 0; i < hd; i++ {
			kmap[x*hd+i] = y*hd + i
		}
		for i := 0; i < hdV; i++ {
			vmap[x*hdV+i] = y*hdV + i
		}
		for t := 0; t < r; t++ {
			for i := 0; i < hd; i++ {
				qmap[(x*r+t)*hd+i] = (y*r+t)*hd + i
			}
			for i := 0; i < hdV; i++ {
				omap[(x*r+t)*hdV+i] = (y*r+t)*hdV + i
			}
		}
	}
	p[sfxQ] = TensorPerm{Rows: qmap}
	p[sfxK] = TensorPerm{Rows: kmap}
	p[sfxV] = TensorPerm{Rows: vmap}
	p[sfxO] = TensorPerm{Cols: omap}
	for s, m := range extra {
		p[s] = TensorPerm{Cols: m}
	}
	return nil
}
