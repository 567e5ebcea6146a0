package merge

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// DefaultNoise is the noise variance δ that NPIB uses, in units of the
// normal scores' unit variance (a signal-to-noise ratio of 1/δ = 20 dB).
//
// δ sets the resolution of the measure: canonical correlations above about
// 1 - δ are all read as "the same". With δ = 0.01 a joint canonical
// correlation of 0.9 gives NPIB ≈ 0.40, 0.99 gives ≈ 0.82 and 0.999 gives
// ≈ 0.975 (for uncorrelated coordinates), which spreads the range where
// adjacent transformer layers live; δ = 0.1 compresses it to 0.63–0.996.
const DefaultNoise = 0.01

// NPIB returns the normalised pairwise information between two layers'
// manifold coordinates a (N×k_A) and b (N×k_B), whose rows are the same N
// samples:
//
//	NPIB(A, B) = I_δ(A; B) / sqrt(H_δ(A) H_δ(B))
//
// with the Gaussian-copula estimator below and δ = DefaultNoise. The result
// is deterministic, symmetric (up to rounding, about 1e-15), invariant to
// strictly monotone transforms of any coordinate, in [0, 1], and exactly 1
// for identical inputs.
//
// # Estimator
//
// Each coordinate is replaced by its normal scores (mid-ranks for ties):
//
//	z_i = Φ⁻¹(rank_i / (N + 1))
//
// R is the sample correlation matrix of the k_A + k_B normal-score columns,
// with blocks R_AA, R_BB, and R_δ = R + δ·1. Then, in nats (natural log),
//
//	I_δ(A; B) = ½ log( det(R_AA + δ1) · det(R_BB + δ1) / det(R_δ) )
//	H_δ(A)    = I_δ(A; A)
//
// I_δ(A; B) is the exact mutual information, under the Gaussian copula model
// (Ince et al. 2017), between A and B each read through independent Gaussian
// noise of variance δ; without the noise, I(A; A) is infinite for continuous
// variables and has no use as an entropy. H_δ(A) is the information that two
// independent noisy readings of A share: the continuous analogue of the
// discrete identity H(A) = I(A; A), computed by the same formula, so that
// NPIB(a, a) = 1 holds exactly and not just to rounding. Copula estimates
// ignore the marginals, so only the dependence structure counts, which is
// what a similarity between layers should measure.
//
// NPIB ≤ 1 holds for every sample, not just in expectation: with canonical
// correlations σ_i of the noisy pair and eigenvalues r^A_i of R_AA (both
// sorted descending), Horn's inequality gives Π_{i≤j} σ_i² ≤ Π_{i≤j} u_i v_i
// with u_i = r^A_i/(r^A_i + δ) (v_i likewise for B); h(x) = -½ log(1 - x)
// has log h(eˣ) convex, so
// Σ h(σ_i²) ≤ Σ h(u_i v_i) ≤ Σ sqrt(h(u_i²) h(v_i²)) ≤ sqrt(H_δ(A) H_δ(B))
// by Cauchy–Schwarz. Results are clamped to [0, 1] against rounding.
//
// The estimate is biased upwards: for independent inputs E[I_δ] ≈
// k_A·k_B/(2N) nats. Coordinates that are constant (all ties) carry no
// information and are dropped; if a or b has none left, NPIB returns 0.
// NPIB returns NaN if a or b holds a NaN.
//
// # Differences from the published code
//
// The published code rank-normalises each layer's two coordinates, averages
// four one-dimensional KSG estimates (k = 5) of I(a_i; b_j), and divides by a
// k-NN entropy estimate (k = 50). A 1-D pairing misses dependence carried by
// rotated or swapped eigenvectors, differential (k-NN) entropies can be zero
// or negative, and the ratio is unbounded, so its "similarities" cannot be
// read as one, or used as a merge weight. Here the coordinates are compared
// jointly, the normaliser is an information (positive, same units), and the
// bound holds by construction.
//
// NPIB panics if a and b have different numbers of rows or fewer than 2 rows.
func NPIB(a, b *mat.Dense) float64 {
	return npib(a, b, DefaultNoise)
}

func npib(a, b *mat.Dense, delta float64) float64 {
	na, _ := a.Dims()
	nb, _ := b.Dims()
	if na != nb {
		panic("merge: NPIB row count mismatch")
	}
	if na < 2 {
		panic("merge: NPIB needs at least 2 rows")
	}
	za, okA := normalScores(a)
	zb, okB := normalScores(b)
	if !okA || !okB {
		return math.NaN()
	}
	if len(za) == 0 || len(zb) == 0 {
		return 0
	}
	iab := gaussianMI(za, zb, delta)
	ha := gaussianMI(za, za, delta)
	hb := gaussianMI(zb, zb, delta)
	if ha <= 0 || hb <= 0 {
		return 0
	}
	s := iab / math.Sqrt(ha*hb)
	return min(max(s, 0), 1)
}

// normalScores returns the normal scores Φ⁻¹(rank/(N+1)) of each
// non-constant column of m, with mid-ranks for ties. ok is false if m holds
// a NaN.
func normalScores(m *mat.Dense) (cols [][]float64, ok bool) {
	n, k := m.Dims()
	idx := make([]int, n)
	col := make([]float64, n)
	for j := 0; j < k; j++ {
		for i := range col {
			col[i] = m.At(i, j)
			if math.IsNaN(col[i]) {
				return nil, false
			}
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(p, q int) int {
			switch {
			case col[p] < col[q]:
				return -1
			case col[p] > col[q]:
				return 1
			}
			return 0
		})
		if col[idx[0]] == col[idx[n-1]] {
			continue // constant column
		}
		z := make([]float64, n)
		for lo := 0; lo < n; {
			hi := lo + 1
			for hi < n && col[idx[hi]] == col[idx[lo]] {
				hi++
			}
			// Ranks lo+1 … hi share the mid-rank (lo+1+hi)/2.
			p := float64(lo+1+hi) / 2 / float64(n+1)
			s := math.Sqrt2 * math.Erfinv(2*p-1)
			for _, i := range idx[lo:hi] {
				z[i] = s
			}
			lo = hi
		}
		cols = append(cols, z)
	}
	return cols, true
}

// gaussianMI returns I_δ(A; B) for the normal-score columns za and zb (see
// NPIB).
func gaussianMI(za, zb [][]float64, delta float64) float64 {
	ka, kb := len(za), len(zb)
	cols := append(slices.Clip(za), zb...)
	r := correlation(cols)
	k := ka + kb
	for i := 0; i < k; i++ {
		r.SetSym(i, i, 1+delta)
	}
	ld := logDet(r)
	lda := logDet(r.SliceSym(0, ka).(*mat.SymDense))
	ldb := logDet(r.SliceSym(ka, k).(*mat.SymDense))
	return max((lda+ldb-ld)/2, 0)
}

// correlation returns the sample correlation matrix of the columns.
func correlation(cols [][]float64) *mat.SymDense {
	k := len(cols)
	n := len(cols[0])
	c := make([][]float64, k)
	for j, col := range cols {
		var m float64
		for _, v := range col {
			m += v
		}
		m /= float64(n)
		cc := make([]float64, n)
		for i, v := range col {
			cc[i] = v - m
		}
		c[j] = cc
	}
	cov := mat.NewSymDense(k, nil)
	for p := 0; p < k; p++ {
		for q := p; q < k; q++ {
			var s float64
			for i, v := range c[p] {
				s += v * c[q][i]
			}
			cov.SetSym(p, q, s)
		}
	}
	sd := make([]float64, k)
	for p := range sd {
		sd[p] = math.Sqrt(cov.At(p, p))
	}
	for p := 0; p < k; p++ {
		for q := p; q < k; q++ {
			v := 1.0
			if p != q {
				v = cov.At(p, q) / (sd[p] * sd[q])
			}
			cov.SetSym(p, q, v)
		}
	}
	return cov
}

// logDet returns log det(s) for a positive definite s.
func logDet(s *mat.SymDense) float64 {
	var ch mat.Cholesky
	if !ch.Factorize(s) {
		// Cannot happen for a correlation matrix plus δ > 0 on the
		// diagonal; make the failure visible.
		return math.NaN()
	}
	return ch.LogDet()
}

// SimilarityMatrix returns the L×L symmetric matrix S_ij = measure(coords[i],
// coords[j]) for i ≤ j, diagonal included. The pairs are computed
// concurrently on up to GOMAXPROCS goroutines, so measure must be safe for
// concurrent use (NPIB and LinearCKA are); each entry is
// computed once, by the same call regardless of scheduling, so the result is
// deterministic. SimilarityMatrix panics if coords is empty.
func SimilarityMatrix(coords []*mat.Dense, measure func(a, b *mat.Dense) float64) *mat.SymDense {
	l := len(coords)
	if l == 0 {
		panic("merge: SimilarityMatrix with no layers")
	}
	type pair struct{ i, j int }
	pairs := make([]pair, 0, l*(l+1)/2)
	for i := 0; i < l; i++ {
		for j := i; j < l; j++ {
			pairs = append(pairs, pair{i, j})
		}
	}
	vals := make([]float64, len(pairs))
	parallelFor(len(pairs), func(p int) {
		vals[p] = measure(coords[pairs[p].i], coords[pairs[p].j])
	})
	s := mat.NewSymDense(l, nil)
	for p, pr := range pairs {
		s.SetSym(pr.i, pr.j, vals[p])
	}
	return s
}
