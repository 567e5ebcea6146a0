package merge

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// ptObjective is Σ_i w[i·n+p[i]].
func ptObjective(w []float64, n int, p []int) float64 {
	var s float64
	for i, j := range p {
		s += w[i*n+j]
	}
	return s
}

// ptIsPerm reports whether p is a permutation of 0..n-1.
func ptIsPerm(p []int, n int) bool {
	if len(p) != n {
		return false
	}
	seen := make([]bool, n)
	for _, j := range p {
		if j < 0 || j >= n || seen[j] {
			return false
		}
		seen[j] = true
	}
	return true
}

// ptBrute is the best objective over all permutations (small n).
func ptBrute(w []float64, n int) float64 {
	best := math.Inf(-1)
	p := make([]int, n)
	used := make([]bool, n)
	var rec func(i int, s float64)
	rec = func(i int, s float64) {
		if i == n {
			best = max(best, s)
			return
		}
		for j := 0; j < n; j++ {
			if !used[j] {
				used[j], p[i] = true, j
				rec(i+1, s+w[i*n+j])
				used[j] = false
			}
		}
	}
	rec(0, 0)
	return best
}

// ptRefAssign is an independent O(n³) Hungarian method (row by row, with
// potentials and a dense scan of the columns) maximising the same objective.
func ptRefAssign(w []float64, n int) []int {
	inf := math.Inf(1)
	u := make([]float64, n+1)
	v := make([]float64, n+1)
	match := make([]int, n+1) // match[j]: row (1-based) of column j, 0 none
	way := make([]int, n+1)
	for i := 1; i <= n; i++ {
		match[0] = i
		j0 := 0
		minv := make([]float64, n+1)
		for j := range minv {
			minv[j] = inf
		}
		used := make([]bool, n+1)
		for {
			used[j0] = true
			i0, delta, j1 := match[j0], inf, 0
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				cur := -w[(i0-1)*n+j-1] - u[i0] - v[j]
				if cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[match[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if match[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			match[j0] = match[j1]
			j0 = j1
		}
	}
	p := make([]int, n)
	for j := 1; j <= n; j++ {
		p[match[j]-1] = j - 1
	}
	return p
}

// ptMatrix returns n×n weights: normal (kind 0), small integers with many
// ties (kind 1) or normal scaled by 1e6 and shifted negative (kind 2).
func ptMatrix(r *rand.Rand, n, kind int) []float64 {
	w := make([]float64, n*n)
	for i := range w {
		switch kind {
		case 0:
			w[i] = r.NormFloat64()
		case 1:
			w[i] = float64(r.IntN(4))
		default:
			w[i] = 1e6*r.NormFloat64() - 5e6
		}
	}
	return w
}

func TestLinearAssignmentBruteForce(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 6} {
		for seed := uint64(1); seed <= 8; seed++ {
			for kind := 0; kind < 3; kind++ {
				r := rand.New(rand.NewPCG(seed, uint64(10*n+kind)))
				w := ptMatrix(r, n, kind)
				p := LinearAssignment(w, n)
				if !ptIsPerm(p, n) {
					t.Fatalf("n=%d seed %d kind %d: %v is not a permutation", n, seed, kind, p)
				}
				got, want := ptObjective(w, n, p), ptBrute(w, n)
				if math.Abs(got-want) > 1e-9*(1+math.Abs(want)) {
					t.Errorf("n=%d seed %d kind %d: objective %g, brute force %g", n, seed, kind, got, want)
				}
			}
		}
	}
	if p := LinearAssignment(nil, 0); p == nil || len(p) != 0 {
		t.Errorf("n=0: %v, want an empty slice", p)
	}
}

func TestLinearAssignmentReference(t *testing.T) {
	for _, n := range []int{7, 17, 64, 150} {
		for kind := 0; kind < 3; kind++ {
			r := rand.New(rand.NewPCG(uint64(n), uint64(kind)))
			w := ptMatrix(r, n, kind)
			p := LinearAssignment(w, n)
			if !ptIsPerm(p, n) {
				t.Fatalf("n=%d kind %d: not a permutation", n, kind)
			}
			got, want := ptObjective(w, n, p), ptObjective(w, n, ptRefAssign(w, n))
			if math.Abs(got-want) > 1e-9*(1+math.Abs(want)) {
				t.Errorf("n=%d kind %d: objective %.12g, reference %.12g", n, kind, got, want)
			}
		}
	}
}

func TestLinearAssignmentPlanted(t *testing.T) {
	const n = 300
	r := rand.New(rand.NewPCG(7, 7))
	plant := r.Perm(n)
	w := make([]float64, n*n)
	for i := range w {
		w[i] = r.Float64()
	}
	for i, j := range plant {
		w[i*n+j] += 10
	}
	p := LinearAssignment(w, n)
	if !slices.Equal(p, plant) {
		t.Fatalf("planted permutation not recovered")
	}
}

func TestLinearAssignmentLarge(t *testing.T) {
	const n = 1000
	w := ptMatrix(rand.New(rand.NewPCG(3, 3)), n, 0)
	start := time.Now()
	p := LinearAssignment(w, n)
	t.Logf("n=%d: %v", n, time.Since(start))
	if !ptIsPerm(p, n) {
		t.Fatal("not a permutation")
	}
	// No exchange of two assignments improves the objective (a necessary
	// condition of optimality that is cheap to check at this size).
	for i := 0; i < n; i += 7 {
		for k := i + 1; k < n; k++ {
			if w[i*n+p[k]]+w[k*n+p[i]] > w[i*n+p[i]]+w[k*n+p[k]]+1e-9 {
				t.Fatalf("swapping rows %d and %d improves the assignment", i, k)
			}
		}
	}
}

func TestLinearAssignmentPanics(t *testing.T) {
	mustPanic(t, "short", func() { LinearAssignment(make([]float64, 3), 2) })
	mustPanic(t, "NaN", func() { LinearAssignment([]float64{0, math.NaN(), 1, 2}, 2) })
	mustPanic(t, "Inf", func() { LinearAssignment([]float64{0, math.Inf(1), 1, 2}, 2) })
}

func BenchmarkLinearAssignment4096(b *testing.B) {
	const n = 4096
	w := ptMatrix(rand.New(rand.NewPCG(1, 1)), n, 0)
	for b.Loop() {
		LinearAssignment(w, n)
	}
}

func TestPermuteApply(t *testing.T) {
	v := []float32{0, 1, 2, 3, 4, 5}
	orig := slices.Clone(v)
	for _, c := range []struct {
		p    TensorPerm
		want []float32
	}{
		{TensorPerm{}, []float32{0, 1, 2, 3, 4, 5}},
		{TensorPerm{Rows: []int{1, 0}}, []float32{3, 4, 5, 0, 1, 2}},
		{TensorPerm{Cols: []int{2, 0, 1}}, []float32{2, 0, 1, 5, 3, 4}},
		{TensorPerm{Rows: []int{1, 0}, Cols: []int{2, 0, 1}}, []float32{5, 3, 4, 2, 0, 1}},
	} {
		got, err := c.p.Apply(v, 3)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v, %v; want %v", c.p, got, err, c.want)
		}
	}
	if !slices.Equal(v, orig) {
		t.Errorf("Apply changed its input: %v", v)
	}
	// A bias is one row.
	if got, err := (TensorPerm{Cols: []int{1, 2, 0}}).Apply([]float32{7, 8, 9}, 3); err != nil || !slices.Equal(got, []float32{8, 9, 7}) {
		t.Errorf("bias: %v, %v", got, err)
	}
	if got, err := (TensorPerm{Rows: []int{}}).Apply(nil, 4); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
}

func TestPermuteApplyErrors(t *testing.T) {
	v := make([]float32, 6)
	for _, c := range []struct {
		name   string
		p      TensorPerm
		perRow int
	}{
		{"perRow 0", TensorPerm{}, 0},
		{"perRow negative", TensorPerm{}, -3},
		{"not whole rows", TensorPerm{}, 4},
		{"Rows too long", TensorPerm{Rows: []int{0, 1, 2}}, 3},
		{"Rows too short", TensorPerm{Rows: []int{0}}, 3},
		{"Cols too short", TensorPerm{Cols: []int{0, 1}}, 3},
		{"Cols too long", TensorPerm{Cols: []int{0, 1, 2, 3}}, 3},
		{"Rows repeated", TensorPerm{Rows: []int{0, 0}}, 3},
		{"Rows negative", TensorPerm{Rows: []int{-1, 0}}, 3},
		{"Cols out of range", TensorPerm{Cols: []int{0, 1, 3}}, 3},
		{"Cols repeated", TensorPerm{Cols: []int{2, 1, 2}}, 3},
	} {
		got, err := c.p.Apply(v, c.perRow)
		if !errors.Is(err, ErrAlign) || got != nil {
			t.Errorf("%s: %v, %v; want an ErrAlign error", c.name, got, err)
		}
	}
}

// ptTensor and ptBlock are an in-memory block.
type ptTensor struct {
	v    []float32
	dims []int
}

type ptBlock map[string]ptTensor

func (blk ptBlock) get() BlockTensors {
	return func(s string) ([]float32, []int, bool, error) {
		t, ok := blk[s]
		if !ok {
			return nil, nil, false, nil
		}
		return t.v, t.dims, true, nil
	}
}

func (blk ptBlock) clone() ptBlock {
	out := ptBlock{}
	for s, t := range blk {
		out[s] = ptTensor{slices.Clone(t.v), slices.Clone(t.dims)}
	}
	return out
}

// ptShape is a block's geometry.
type ptShape struct {
	d, ff, nHead, nKV, hd, hdV int
	biases                     bool // qwen2-like q/k/v biases plus FFN and output biases
	fullNorm                   bool // q/k norms over the whole projection instead of per head
}

func ptRandBlock(r *rand.Rand, sh ptShape) ptBlock {
	blk := ptBlock{}
	add := func(s string, dims ...int) {
		n := 1
		for _, x := range dims {
			n *= x
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		blk[s] = ptTensor{v, dims}
	}
	d, ff, q, kv, vv := sh.d, sh.ff, sh.nHead*sh.hd, sh.nKV*sh.hd, sh.nKV*sh.hdV
	add("attn_norm.weight", d)
	add("ffn_norm.weight", d)
	add("ffn_gate.weight", d, ff)
	add("ffn_up.weight", d, ff)
	add("ffn_down.weight", ff, d)
	add("attn_q.weight", d, q)
	add("attn_k.weight", d, kv)
	add("attn_v.weight", d, vv)
	add("attn_output.weight", sh.nHead*sh.hdV, d)
	if sh.fullNorm {
		add("attn_q_norm.weight", q)
		add("attn_k_norm.weight", kv)
	} else {
		add("attn_q_norm.weight", sh.hd)
		add("attn_k_norm.weight", sh.hd)
	}
	if sh.biases {
		add("attn_q.bias", q)
		add("attn_k.bias", kv)
		add("attn_v.bias", vv)
		add("attn_output.bias", d)
		add("ffn_gate.bias", ff)
		add("ffn_up.bias", ff)
		add("ffn_down.bias", d)
	}
	return blk
}

// ptScramble returns b with its neurons and KV groups moved by explicit
// index arithmetic: c's neuron j is b's neuron sigma[j], c's KV group g is
// b's group tau[g] (with its query heads in order), plus noise.
func ptScramble(r *rand.Rand, b ptBlock, sh ptShape, sigma, tau []int, noise float64) ptBlock {
	ratio := sh.nHead / sh.nKV
	kvIdx := func(hd int) func(int) int { // KV row or bias index
		return func(j int) int { return tau[j/hd]*hd + j%hd }
	}
	qIdx := func(hd int) func(int) int { // query-head row or column index
		return func(j int) int {
			h, i := j/hd, j%hd
			return (tau[h/ratio]*ratio+h%ratio)*hd + i
		}
	}
	neuron := func(j int) int { return sigma[j] }
	same := func(j int) int { return j }
	move := map[string][2]func(int) int{ // row source, column source
		"ffn_gate.weight":    {neuron, same},
		"ffn_up.weight":      {neuron, same},
		"ffn_down.weight":    {same, neuron},
		"ffn_gate.bias":      {same, neuron},
		"ffn_up.bias":        {same, neuron},
		"attn_q.weight":      {qIdx(sh.hd), same},
		"attn_k.weight":      {kvIdx(sh.hd), same},
		"attn_v.weight":      {kvIdx(sh.hdV), same},
		"attn_output.weight": {same, qIdx(sh.hdV)},
		"attn_q.bias":        {same, qIdx(sh.hd)},
		"attn_k.bias":        {same, kvIdx(sh.hd)},
		"attn_v.bias":        {same, kvIdx(sh.hdV)},
	}
	if sh.fullNorm {
		move["attn_q_norm.weight"] = [2]func(int) int{same, qIdx(sh.hd)}
		move["attn_k_norm.weight"] = [2]func(int) int{same, kvIdx(sh.hd)}
	}
	c := ptBlock{}
	for s, t := range b {
		perRow := t.dims[0]
		rows := len(t.v) / perRow
		f, ok := move[s]
		if !ok {
			f = [2]func(int) int{same, same}
		}
		v := make([]float32, len(t.v))
		for row := 0; row < rows; row++ {
			for k := 0; k < perRow; k++ {
				v[row*perRow+k] = t.v[f[0](row)*perRow+f[1](k)] + float32(noise*r.NormFloat64())
			}
		}
		c[s] = ptTensor{v, slices.Clone(t.dims)}
	}
	return c
}

// ptPermuted applies p to every tensor of blk.
func ptPermuted(t *testing.T, blk ptBlock, p BlockPerm) ptBlock {
	t.Helper()
	out := ptBlock{}
	for s, x := range blk {
		v, err := p[s].Apply(x.v, x.dims[0])
		if err != nil {
			t.Fatalf("Apply %s: %v", s, err)
		}
		out[s] = ptTensor{v, x.dims}
	}
	return out
}

func ptIdentity(p []int) bool {
	for i, j := range p {
		if i != j {
			return false
		}
	}
	return true
}

var ptShapes = []ptShape{
	{d: 16, ff: 48, nHead: 4, nKV: 2, hd: 4, hdV: 4},
	{d: 16, ff: 48, nHead: 4, nKV: 2, hd: 4, hdV: 4, biases: true, fullNorm: true},
	{d: 32, ff: 40, nHead: 8, nKV: 4, hd: 4, hdV: 2, biases: true},
	{d: 24, ff: 30, nHead: 6, nKV: 6, hd: 4, hdV: 4, fullNorm: true}, // no GQA
}

// Block c built as b with planted permutations (and tiny noise): the match
// puts every tensor of c back as b's.
func TestMatchBlocksRecoversPlanted(t *testing.T) {
	for si, sh := range ptShapes {
		for seed := uint64(1); seed <= 4; seed++ {
			r := rand.New(rand.NewPCG(seed, uint64(si)))
			b := ptRandBlock(r, sh)
			sigma, tau := r.Perm(sh.ff), r.Perm(sh.nKV)
			if seed == 1 { // at least one case with every group moved
				for g := range tau {
					tau[g] = (g + 1) % sh.nKV
				}
			}
			c := ptScramble(r, b, sh, sigma, tau, 1e-5)
			p, err := MatchBlocks(b.get(), c.get(), sh.nHead, sh.nKV)
			if err != nil {
				t.Fatalf("shape %d seed %d: %v", si, seed, err)
			}
			want := []string{"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
				"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight"}
			if sh.biases {
				want = append(want, "ffn_gate.bias", "ffn_up.bias", "attn_q.bias", "attn_k.bias", "attn_v.bias")
			}
			if sh.fullNorm {
				want = append(want, "attn_q_norm.weight", "attn_k_norm.weight")
			}
			for _, s := range want {
				if _, ok := p[s]; !ok {
					t.Errorf("shape %d seed %d: no permutation of %s", si, seed, s)
				}
			}
			if len(p) != len(want) {
				t.Errorf("shape %d seed %d: %d permuted tensors, want %d", si, seed, len(p), len(want))
			}
			back := ptPermuted(t, c, p)
			for s, x := range b {
				for i, y := range back[s].v {
					if math.Abs(float64(y-x.v[i])) > 1e-3 {
						t.Fatalf("shape %d seed %d: %s[%d] = %g after matching, b has %g", si, seed, s, i, y, x.v[i])
					}
				}
			}
		}
	}
}

func ptSilu(x float64) float64 { return x / (1 + math.Exp(-x)) }

// ptFFN is y = down·(silu(gate·x + bg) ⊙ (up·x + bu)) + bd.
func ptFFN(blk ptBlock, sh ptShape, x []float64) []float64 {
	gate, up, down := blk["ffn_gate.weight"].v, blk["ffn_up.weight"].v, blk["ffn_down.weight"].v
	h := make([]float64, sh.ff)
	for j := range h {
		var g, u float64
		for k, xk := range x {
			g += float64(gate[j*sh.d+k]) * xk
			u += float64(up[j*sh.d+k]) * xk
		}
		if bg, ok := blk["ffn_gate.bias"]; ok {
			g += float64(bg.v[j])
		}
		if bu, ok := blk["ffn_up.bias"]; ok {
			u += float64(bu.v[j])
		}
		h[j] = ptSilu(g) * u
	}
	y := make([]float64, sh.d)
	for k := range y {
		for j, hj := range h {
			y[k] += float64(down[k*sh.ff+j]) * hj
		}
		if bd, ok := blk["ffn_down.bias"]; ok {
			y[k] += float64(bd.v[k])
		}
	}
	return y
}

// ptLinear is W·x + bias for W of dims [len(x), rows].
func ptLinear(blk ptBlock, w, bias string, x []float64) []float64 {
	t := blk[w]
	n := len(t.v) / len(x)
	y := make([]float64, n)
	for j := range y {
		for k, xk := range x {
			y[j] += float64(t.v[j*len(x)+k]) * xk
		}
		if b, ok := blk[bias]; ok {
			y[j] += float64(b.v[j])
		}
	}
	return y
}

// ptRMSNorm normalises each group of len(w) values of x by its RMS and scales by w.
func ptRMSNorm(x []float64, w []float32) {
	for g := 0; g < len(x); g += len(w) {
		seg := x[g : g+len(w)]
		var ss float64
		for _, v := range seg {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(seg))+1e-6)
		for i := range seg {
			seg[i] *= s * float64(w[i])
		}
	}
}

// ptAttention is one query token attending to keys (no RoPE, no mask): head
// h uses KV head h/(nHead/nKV).
func ptAttention(blk ptBlock, sh ptShape, xq []float64, xs [][]float64) []float64 {
	q := ptLinear(blk, "attn_q.weight", "attn_q.bias", xq)
	ptRMSNorm(q, blk["attn_q_norm.weight"].v)
	ks := make([][]float64, len(xs))
	vs := make([][]float64, len(xs))
	for t, x := range xs {
		ks[t] = ptLinear(blk, "attn_k.weight", "attn_k.bias", x)
		ptRMSNorm(ks[t], blk["attn_k_norm.weight"].v)
		vs[t] = ptLinear(blk, "attn_v.weight", "attn_v.bias", x)
	}
	ratio := sh.nHead / sh.nKV
	o := make([]float64, sh.nHead*sh.hdV)
	for h := 0; h < sh.nHead; h++ {
		kv := h / ratio
		scores := make([]float64, len(xs))
		top := math.Inf(-1)
		for t := range xs {
			for i := 0; i < sh.hd; i++ {
				scores[t] += q[h*sh.hd+i] * ks[t][kv*sh.hd+i]
			}
			scores[t] /= math.Sqrt(float64(sh.hd))
			top = max(top, scores[t])
		}
		var z float64
		for t := range scores {
			scores[t] = math.Exp(scores[t] - top)
			z += scores[t]
		}
		for t := range xs {
			for i := 0; i < sh.hdV; i++ {
				o[h*sh.hdV+i] += scores[t] / z * vs[t][kv*sh.hdV+i]
			}
		}
	}
	return ptLinear(blk, "attn_output.weight", "attn_output.bias", o)
}

// Matching two unrelated blocks moves neurons and groups, but the permuted
// block computes the same FFN and attention outputs as the original.
func TestMatchBlocksPermutationPreservesFunction(t *testing.T) {
	for si, sh := range ptShapes {
		movedHeads := false
		for seed := uint64(1); seed <= 6; seed++ {
			r := rand.New(rand.NewPCG(100+seed, uint64(si)))
			b, c := ptRandBlock(r, sh), ptRandBlock(r, sh)
			p, err := MatchBlocks(b.get(), c.get(), sh.nHead, sh.nKV)
			if err != nil {
				t.Fatalf("shape %d seed %d: %v", si, seed, err)
			}
			if ptIdentity(p["ffn_up.weight"].Rows) {
				t.Errorf("shape %d seed %d: FFN permutation is the identity", si, seed)
			}
			movedHeads = movedHeads || !ptIdentity(p["attn_k.weight"].Rows)
			cp := ptPermuted(t, c, p)
			for trial := 0; trial < 3; trial++ {
				vec := func() []float64 {
					x := make([]float64, sh.d)
					for i := range x {
						x[i] = r.NormFloat64()
					}
					return x
				}
				x := vec()
				ptClose(t, "FFN", ptFFN(c, sh, x), ptFFN(cp, sh, x))
				xs := [][]float64{vec(), vec(), vec(), x}
				ptClose(t, "attention", ptAttention(c, sh, x, xs), ptAttention(cp, sh, x, xs))
			}
		}
		if !movedHeads {
			t.Errorf("shape %d: no seed moved the KV groups; the attention check is vacuous", si)
		}
	}
}

func ptClose(t *testing.T, what string, a, b []float64) {
	t.Helper()
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-5*(1+math.Abs(a[i])) {
			t.Fatalf("%s[%d]: %g unpermuted, %g permuted", what, i, a[i], b[i])
		}
	}
}

func TestMatchBlocksPartial(t *testing.T) {
	sh := ptShapes[0]
	r := rand.New(rand.NewPCG(5, 5))
	b, c := ptRandBlock(r, sh), ptRandBlock(r, sh)

	// One KV head: only the FFN moves.
	p, err := MatchBlocks(b.get(), c.get(), sh.nHead, 1)
	if err != nil || len(p) != 3 {
		t.Errorf("nHeadKV=1: %v, %v; want the 3 FFN tensors", p, err)
	}
	// No llama-like attention (fused QKV): only the FFN moves.
	for _, blk := range []ptBlock{b, c} {
		delete(blk, "attn_q.weight")
	}
	p, err = MatchBlocks(b.get(), c.get(), sh.nHead, sh.nKV)
	if err != nil || len(p) != 3 {
		t.Errorf("no attn_q: %v, %v; want the 3 FFN tensors", p, err)
	}
	// No gate (up/down only FFN).
	for _, blk := range []ptBlock{b, c} {
		delete(blk, "ffn_gate.weight")
	}
	p, err = MatchBlocks(b.get(), c.get(), sh.nHead, sh.nKV)
	if _, gate := p["ffn_gate.weight"]; err != nil || len(p) != 2 || gate {
		t.Errorf("no gate: %v, %v; want up and down", p, err)
	}
	// No FFN either: nothing.
	for _, blk := range []ptBlock{b, c} {
		delete(blk, "ffn_up.weight")
		delete(blk, "ffn_down.weight")
	}
	p, err = MatchBlocks(b.get(), c.get(), sh.nHead, sh.nKV)
	if err != nil || len(p) != 0 {
		t.Errorf("empty block: %v, %v", p, err)
	}
}

func TestMatchBlocksErrors(t *testing.T) {
	sh := ptShapes[1]
	r := rand.New(rand.NewPCG(9, 9))
	base := ptRandBlock(r, sh)
	boom := errors.New("read failed")
	for _, c := range []struct {
		name     string
		edit     func(b, c ptBlock) // applied to copies
		nHead    int
		sentinel error
		mention  string
	}{
		{"gate/up dims", func(b, c ptBlock) {
			for _, blk := range []ptBlock{b, c} {
				blk["ffn_gate.weight"] = ptTensor{make([]float32, 16*47), []int{16, 47}}
			}
		}, 4, ErrAlign, "ffn_gate.weight"},
		{"down dims", func(b, c ptBlock) {
			for _, blk := range []ptBlock{b, c} {
				blk["ffn_down.weight"] = ptTensor{make([]float32, 48*17), []int{48, 17}}
			}
		}, 4, ErrAlign, "ffn_down.weight"},
		{"b and c differ", func(b, c ptBlock) {
			c["ffn_up.weight"] = ptTensor{make([]float32, 16*50), []int{16, 50}}
		}, 4, ErrAlign, "ffn_up.weight"},
		{"values vs dims", func(b, c ptBlock) {
			c["ffn_up.weight"] = ptTensor{make([]float32, 10), []int{16, 48}}
		}, 4, ErrAlign, "ffn_up.weight"},
		{"FFN without down", func(b, c ptBlock) {
			delete(b, "ffn_down.weight")
			delete(c, "ffn_down.weight")
		}, 4, ErrUnsupported, "ffn_down.weight"},
		{"gate only in c", func(b, c ptBlock) { delete(b, "ffn_gate.weight") }, 4, ErrUnsupported, "ffn_gate.weight"},
		{"FFN bias length", func(b, c ptBlock) {
			c["ffn_up.bias"] = ptTensor{make([]float32, 47), []int{47}}
		}, 4, ErrAlign, "ffn_up.bias"},
		{"heads not in groups", nil, 3, ErrAlign, "KV groups"},
		{"q rows vs heads", func(b, c ptBlock) {
			for _, blk := range []ptBlock{b, c} {
				blk["attn_q.weight"] = ptTensor{make([]float32, 16*18), []int{16, 18}}
			}
		}, 4, ErrAlign, "attn_q.weight"},
		{"k rows", func(b, c ptBlock) {
			for _, blk := range []ptBlock{b, c} {
				blk["attn_k.weight"] = ptTensor{make([]float32, 16*12), []int{16, 12}}
			}
		}, 4, ErrAlign, "attn_k.weight"},
		{"output dims", func(b, c ptBlock) {
			for _, blk := range []ptBlock{b, c} {
				blk["attn_output.weight"] = ptTensor{make([]float32, 16*12), []int{12, 16}}
			}
		}, 4, ErrAlign, "attn_output.weight"},
		{"q bias length", func(b, c ptBlock) {
			c["attn_q.bias"] = ptTensor{make([]float32, 8), []int{8}}
		}, 4, ErrAlign, "attn_q.bias"},
		{"k norm length", func(b, c ptBlock) {
			c["attn_k_norm.weight"] = ptTensor{make([]float32, 6), []int{6}}
		}, 4, ErrAlign, "attn_k_norm.weight"},
		{"NaN weight", func(b, c ptBlock) { c["ffn_up.weight"].v[3] = float32(math.NaN()) }, 4, ErrAlign, "not finite"},
	} {
		b, cc := base.clone(), base.clone()
		if c.edit != nil {
			c.edit(b, cc)
		}
		_, err := MatchBlocks(b.get(), cc.get(), c.nHead, sh.nKV)
		if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: %v; want %v naming %q", c.name, err, c.sentinel, c.mention)
		}
	}
	failing := func(s string) ([]float32, []int, bool, error) {
		if s == "attn_v.weight" {
			return nil, nil, false, boom
		}
		return base.get()(s)
	}
	if _, err := MatchBlocks(base.get(), failing, sh.nHead, sh.nKV); !errors.Is(err, boom) || !strings.Contains(err.Error(), "attn_v.weight") {
		t.Errorf("reader error: %v", err)
	}
	if _, err := MatchBlocks(nil, base.get(), sh.nHead, sh.nKV); !errors.Is(err, ErrAlign) {
		t.Errorf("nil reader: %v", err)
	}
}
