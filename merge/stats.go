package merge

import (
	"math"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"

	"github.com/mka-gguf/mka-gguf/simd"
)

// CosineSum returns the sum over rows of the cosine similarity between
// matching rows of a and b, and the number of rows. a and b hold rows of
// length d back to back (row-major, as a hidden-state buffer of n tokens ×
// d features):
//
//	sum = Σ_r cos(a_r, b_r),  cos(u, v) = u·v / (||u|| ||v||)
//
// A row pair where both rows are zero counts as cos = 1 (nothing changed);
// a pair where exactly one row is zero counts as cos = 0 (no direction in
// common). Each row's products are accumulated in float32 SIMD lanes
// (simd.Dot, relative error about d·2⁻²⁴ at worst), the cosines are summed
// in float64, and each cosine is clamped to [-1, 1].
//
// It is meant to be accumulated over calibration batches, with the input and
// output of each block, into the arguments of BlockInfluence.
//
// CosineSum panics if d < 1, len(a) != len(b), or len(a) is not a multiple
// of d.
func CosineSum(a, b []float32, d int) (sum float64, rows int) {
	if d < 1 {
		panic("merge: CosineSum row length < 1")
	}
	if len(a) != len(b) {
		panic("merge: CosineSum length mismatch")
	}
	if len(a)%d != 0 {
		panic("merge: CosineSum length not a multiple of d")
	}
	rows = len(a) / d
	for r := 0; r < rows; r++ {
		dot, na, nb := dotNorms32(a[r*d:r*d+d], b[r*d:r*d+d])
		sum += cosine(dot, na, nb)
	}
	return sum, rows
}

// dotNorms32 returns Σ u_i v_i, Σ u_i², Σ v_i² (calibration's hot loop:
// it runs on every token of every block output).
func dotNorms32(u, v []float32) (dot, nu, nv float64) {
	v = v[:len(u)]
	return float64(simd.Dot(u, v)), float64(simd.Dot(u, u)), float64(simd.Dot(v, v))
}

// cosine returns dot/sqrt(nu·nv) clamped to [-1, 1], with the zero-norm
// conventions of CosineSum.
func cosine(dot, nu, nv float64) float64 {
	switch {
	case nu == 0 && nv == 0:
		return 1
	case nu == 0 || nv == 0:
		return 0
	}
	return min(max(dot/math.Sqrt(nu*nv), -1), 1)
}

// BlockInfluence returns the ShortGPT Block Influence of each block from
// accumulated CosineSum results (Men et al. 2024):
//
//	BI_i = 1 - cosSum_i / count_i
//
// i.e. one minus the mean cosine between the input and output hidden state
// of block i over all calibration tokens. A low BI means the block barely
// changes the residual stream. BI_i is NaN when count_i is 0. BlockInfluence
// panics if the lengths differ.
func BlockInfluence(cosSum []float64, count []int) []float64 {
	if len(cosSum) != len(count) {
		panic("merge: BlockInfluence length mismatch")
	}
	bi := make([]float64, len(cosSum))
	for i, s := range cosSum {
		if count[i] == 0 {
			bi[i] = math.NaN()
			continue
		}
		bi[i] = 1 - s/float64(count[i])
	}
	return bi
}

// AngularDistance returns the mean angular distance between matching rows of
// x and y (Gromov et al. 2024), each N×d with one row per calibration sample
// (the hidden state of the last real token):
//
//	d(x, y) = (1/N) Σ_r arccos(cos(x_r, y_r)) / π
//
// with the zero-norm conventions of CosineSum and cos clamped to [-1, 1]. The
// result is in [0, 1]. AngularDistance panics if the shapes differ.
func AngularDistance(x, y *mat.Dense) float64 {
	n, d := x.Dims()
	ny, dy := y.Dims()
	if n != ny || d != dy {
		panic("merge: AngularDistance shape mismatch")
	}
	return angular(x, y, rowSquares(x), rowSquares(y))
}

// AngularMatrix returns the M×M matrix of AngularDistance between all pairs
// of the given representations (M = len(layers), each N×d), symmetric with a
// zero diagonal. For the angular pruning baseline pass M = L+1
// representations: layers[0] the input of block 0 (the embeddings) and
// layers[i] the output of block i-1, so that entry (l, l+n) spans blocks
// l … l+n-1 (see PlanPruneAngular). The pairs are computed concurrently.
// AngularMatrix panics if layers is empty or the shapes differ.
func AngularMatrix(layers []*mat.Dense) *mat.Dense {
	m := len(layers)
	if m == 0 {
		panic("merge: AngularMatrix with no layers")
	}
	n, d := layers[0].Dims()
	norms := make([][]float64, m)
	for i, l := range layers {
		if r, c := l.Dims(); r != n || c != d {
			panic("merge: AngularMatrix shape mismatch")
		}
		norms[i] = rowSquares(l)
	}
	type pair struct{ i, j int }
	var pairs []pair
	for i := 0; i < m; i++ {
		for j := i + 1; j < m; j++ {
			pairs = append(pairs, pair{i, j})
		}
	}
	vals := make([]float64, len(pairs))
	parallelFor(len(pairs), func(p int) {
		i, j := pairs[p].i, pairs[p].j
		vals[p] = angular(layers[i], layers[j], norms[i], norms[j])
	})
	out := mat.NewDense(m, m, nil)
	for p, pr := range pairs {
		out.Set(pr.i, pr.j, vals[p])
		out.Set(pr.j, pr.i, vals[p])
	}
	return out
}

// rowSquares returns the squared Euclidean norm of each row of x.
func rowSquares(x *mat.Dense) []float64 {
	n, d := x.Dims()
	out := make([]float64, n)
	for i := range out {
		r := x.RawRowView(i)
		out[i] = blas64.Implementation().Ddot(d, r, 1, r, 1)
	}
	return out
}

// angular returns the mean of arccos(cos(x_r, y_r))/π given squared row
// norms.
func angular(x, y *mat.Dense, nx, ny []float64) float64 {
	n, d := x.Dims()
	var sum float64
	for i := 0; i < n; i++ {
		dot := blas64.Implementation().Ddot(d, x.RawRowView(i), 1, y.RawRowView(i), 1)
		sum += math.Acos(cosine(dot, nx[i], ny[i])) / math.Pi
	}
	return sum / float64(n)
}
