package merge

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Kernel selects the affinity kernel of a diffusion map.
type Kernel int

const (
	// KernelMedian is the Gaussian kernel with a median bandwidth:
	//
	//	K_ij = exp(-D²_ij / (2σ²))
	//
	// where D²_ij = ||x_i - x_j||² and σ² is the median of the nonzero
	// values D²_ij with i < j: with those M values sorted ascending as
	// v_1 ≤ … ≤ v_M, σ² = v_{(M+1)/2} for odd M and (v_{M/2} + v_{M/2+1})/2
	// for even M. It is the default.
	KernelMedian Kernel = iota

	// KernelPaper is the kernel of the published MKA code, a fixed-scale
	// exponential of the square root of the Euclidean distance:
	//
	//	K_ij = exp(-sqrt(D_ij / 8)),  D_ij = ||x_i - x_j||
	//
	// It has no bandwidth rule, so its behaviour depends on the scale of
	// the activations: for points a few units apart the kernel is nearly
	// flat and, having a cusp at D = 0, gives coordinates that bend back
	// at the ends of a line (ψ_1 of 40 evenly spaced points is monotone
	// on a line of length 1000 but not of length 100).
	KernelPaper
)

// String returns "median" or "paper".
func (k Kernel) String() string {
	switch k {
	case KernelMedian:
		return "median"
	case KernelPaper:
		return "paper"
	}
	return fmt.Sprintf("Kernel(%d)", int(k))
}

// DefaultDims is the number of non-trivial diffusion coordinates DiffusionMap
// keeps when DiffusionOptions.Dims is zero.
//
// Four is a compromise between two errors. Too few coordinates make the
// similarity hinge on which eigenvectors survive the cut: two layers whose
// second and third eigenvalues are close can order the eigenvectors
// differently, and with the published code's two coordinates that reads as
// dissimilar. NPIB compares the coordinates jointly (all cross-correlations),
// so a swap or rotation inside the kept subspace costs nothing, and four
// coordinates make a swap across the cut less likely. Too many coordinates
// add estimator bias: for independent inputs the Gaussian-copula MI is biased
// upwards by about k_A·k_B/(2N) nats, i.e. 16/(2·57) ≈ 0.14 nats at the
// paper's 57 calibration prompts, under 2 % of H_δ ≈ 7.9 nats for four
// coordinates; with eight it is 0.56 nats. It also keeps the sample
// requirement (N ≥ Dims+2) trivial.
const DefaultDims = 4

// DiffusionOptions configures DiffusionMap. The zero value selects the
// defaults. The published MKA code corresponds to
// DiffusionOptions{Kernel: KernelPaper, Dims: 2, T: -1} (α = 0.5).
type DiffusionOptions struct {
	// Kernel is the affinity kernel, KernelMedian by default.
	Kernel Kernel

	// Alpha is the Coifman–Lafon normalisation exponent α in [0, 1].
	// Zero selects the default 0.5 (the paper's choice); a negative value
	// selects α = 0 (the normalised graph Laplacian). α = 1 approximates
	// the Laplace–Beltrami operator independently of the sampling density.
	Alpha float64

	// Dims is the number of non-trivial coordinates returned; zero selects
	// DefaultDims.
	Dims int

	// T is the diffusion time: coordinate k is scaled by λ_k^T. Zero
	// selects the default 1; a negative value selects T = 0 (no eigenvalue
	// weighting, as in the published code). NPIB is invariant to this
	// scaling (it works on ranks); distance-based measures are not.
	T float64
}

// diffusionParams are DiffusionOptions with the defaults applied.
type diffusionParams struct {
	kernel Kernel
	alpha  float64
	dims   int
	t      float64
}

func (o DiffusionOptions) params() (diffusionParams, error) {
	p := diffusionParams{kernel: o.Kernel, alpha: o.Alpha, dims: o.Dims, t: o.T}
	switch o.Kernel {
	case KernelMedian, KernelPaper:
	default:
		return p, fmt.Errorf("%w: unknown kernel %d", ErrOption, int(o.Kernel))
	}
	switch {
	case math.IsNaN(o.Alpha) || o.Alpha > 1:
		return p, fmt.Errorf("%w: alpha %v not in [0, 1]", ErrOption, o.Alpha)
	case o.Alpha == 0:
		p.alpha = 0.5
	case o.Alpha < 0:
		p.alpha = 0
	}
	switch {
	case o.Dims < 0:
		return p, fmt.Errorf("%w: dims %d < 0", ErrOption, o.Dims)
	case o.Dims == 0:
		p.dims = DefaultDims
	}
	switch {
	case math.IsNaN(o.T) || math.IsInf(o.T, 0):
		return p, fmt.Errorf("%w: diffusion time %v", ErrOption, o.T)
	case o.T == 0:
		p.t = 1
	case o.T < 0:
		p.t = 0
	}
	return p, nil
}

// DiffusionMap returns the diffusion-map coordinates of the rows of x, an
// N×d matrix of N samples with d features, as an N×Dims matrix.
//
// The computation, with defaults from DiffusionOptions:
//
//	D²_ij = ||x_i - x_j||²                    (via the Gram matrix, see below)
//	K_ij  = kernel(D²_ij)                     (see Kernel)
//	q_i   = Σ_j K_ij
//	K̃_ij  = K_ij / (q_i^α q_j^α)              (Coifman–Lafon α-normalisation)
//	d_i   = Σ_j K̃_ij
//	A_ij  = K̃_ij / sqrt(d_i d_j)               (symmetric conjugate of P = D⁻¹K̃)
//	A v_k = λ_k v_k,  1 = λ_0 ≥ λ_1 ≥ λ_2 ≥ …
//	ψ_k(i) = v_k(i) / v_0(i),  v_0(i) = sqrt(d_i / Σ_j d_j)
//	result[i][k-1] = λ_k^T ψ_k(i),  k = 1 … Dims
//
// ψ_k are the right eigenvectors of the Markov matrix P = D⁻¹K̃, normalised
// so that the trivial one, ψ_0, is the constant 1 and Σ_i π_i ψ_k(i)² = 1
// with π_i = d_i/Σ_j d_j. The trivial pair (λ_0 = 1, v_0) is known in closed
// form; it is removed by deflation, A - v_0 v_0ᵀ, before the
// eigendecomposition, so it is dropped exactly even when the kernel graph is
// disconnected (then λ_1 = 1 and ψ_1 separates the components). Eigenvalues
// are sorted in descending order. Each ψ_k has its sign fixed so that its
// entry of largest magnitude (the first one on exact ties) is positive, which
// makes the result reproducible for a given input (for a mirror-symmetric
// point set, where two entries tie up to rounding, rounding picks the sign).
//
// The squared distances come from one Gram matrix of the column-centred data,
// G = X_c X_cᵀ (a BLAS symmetric rank-k update), as D²_ij = G_ii + G_jj -
// 2 G_ij, with negative rounding results clamped to 0 and D²_ii = 0.
// Centring first keeps the cancellation error small when the activations
// share a large common offset. The cost is about N²d flops for the Gram
// matrix plus (4/3)N³ for the tridiagonal reduction: only the Dims wanted
// eigenvectors are computed, by inverse iteration, which is about 5 times
// faster than a full eigendecomposition at N = 256.
//
// DiffusionMap returns an error wrapping ErrOption for invalid options,
// ErrTooFewSamples if N < Dims+2, ErrDegenerate if all rows are equal or
// fewer than Dims non-trivial eigenvalues are positive, and ErrFactorize if
// the eigendecomposition fails. x is not modified.
func DiffusionMap(x *mat.Dense, opt DiffusionOptions) (*mat.Dense, error) {
	p, err := opt.params()
	if err != nil {
		return nil, err
	}
	r, err := diffusion(x, p)
	if err != nil {
		return nil, err
	}
	return r.coords, nil
}

// DiffusionMaps runs DiffusionMap on every layer, concurrently with up to
// GOMAXPROCS layers at a time, and returns the coordinates in layer order.
// The result does not depend on the scheduling. If any layer fails, the
// error of the lowest-numbered failing layer is returned, wrapped with its
// index.
func DiffusionMaps(layers []*mat.Dense, opt DiffusionOptions) ([]*mat.Dense, error) {
	p, err := opt.params()
	if err != nil {
		return nil, err
	}
	out := make([]*mat.Dense, len(layers))
	errs := make([]error, len(layers))
	parallelFor(len(layers), func(i int) {
		r, err := diffusion(layers[i], p)
		if err != nil {
			errs[i] = err
			return
		}
		out[i] = r.coords
	})
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return out, nil
}

// diffusionResult is the full output of diffusion, for DiffusionMap and
// the tests.
type diffusionResult struct {
	// values holds the N-1 non-trivial eigenvalues of A, descending.
	values []float64
	// coords is the N×dims result of DiffusionMap.
	coords *mat.Dense
	// psi holds the unscaled ψ_1 … ψ_dims as columns (N×dims).
	psi *mat.Dense
}

// diffusion implements DiffusionMap.
func diffusion(x *mat.Dense, p diffusionParams) (*diffusionResult, error) {
	n, _ := x.Dims()
	if n < p.dims+2 {
		return nil, fmt.Errorf("%w: %d samples, need at least dims+2 = %d", ErrTooFewSamples, n, p.dims+2)
	}
	d2 := sqDistances(x)
	k, err := kernelMatrix(d2, n, p.kernel)
	if err != nil {
		return nil, err
	}
	a, v0 := markovSym(k, n, p.alpha)

	// Deflate the trivial pair: A' = A - v0 v0ᵀ.
	for i := 0; i < n; i++ {
		row := a[i*n : i*n+n]
		for j := range row {
			row[j] -= v0[i] * v0[j]
		}
	}
	vals, vecs, err := spectrum(a, v0, n, p.dims)
	if err != nil {
		return nil, err
	}
	res := &diffusionResult{values: vals}
	// Eigenvalues of a symmetric stochastic conjugate lie in [-1, 1]; a
	// kept one at rounding level means too few distinct points.
	const tiny = 1e-10
	for k := 0; k < p.dims; k++ {
		if vals[k] <= tiny {
			return nil, fmt.Errorf("%w: only %d of %d requested non-trivial eigenvalues are positive", ErrDegenerate, k, p.dims)
		}
	}

	res.psi = mat.NewDense(n, p.dims, nil)
	res.coords = mat.NewDense(n, p.dims, nil)
	psi := make([]float64, n)
	for k := 0; k < p.dims; k++ {
		// ψ_k = v_k / v0; then the entry of largest magnitude (the first
		// on ties) is made positive.
		arg, big := 0, -1.0
		for i := range psi {
			psi[i] = vecs.At(i, k) / v0[i]
			if v := math.Abs(psi[i]); v > big {
				arg, big = i, v
			}
		}
		sign := 1.0
		if psi[arg] < 0 {
			sign = -1
		}
		scale := sign * math.Pow(min(vals[k], 1), p.t)
		for i, v := range psi {
			res.psi.Set(i, k, sign*v)
			res.coords.Set(i, k, scale*v)
		}
	}
	return res, nil
}

// forceFullEigen makes spectrum use the full eigendecomposition (for tests).
var forceFullEigen = false

// spectrum returns the eigenvalues of the deflated operator A' = A - v0 v0ᵀ
// in descending order without the deflated one (N-1 values), and the
// eigenvectors of the largest dims of them as the columns of an N×dims
// matrix. a (row-major, symmetric) is overwritten.
//
// The fast path computes only the needed eigenvectors (topEigenSym); there
// the deflated eigenvalue, 0 in exact arithmetic, is the one closest to
// zero. If that path fails, a full decomposition is used, and the deflated
// direction is the eigenvector with the largest overlap with v0.
func spectrum(a, v0 []float64, n, dims int) ([]float64, *mat.Dense, error) {
	if !forceFullEigen {
		full := append([]float64(nil), a...)
		all, vecs, ok := topEigenSym(a, n, dims)
		if ok {
			drop := 0
			for i, v := range all {
				if math.Abs(v) < math.Abs(all[drop]) {
					drop = i
				}
			}
			vals := append(all[:drop:drop], all[drop+1:]...)
			return vals, mat.NewDense(n, dims, vecs.Data), nil
		}
		a = full
	}
	var es mat.EigenSym
	if !es.Factorize(mat.NewSymDense(n, a), true) {
		return nil, nil, fmt.Errorf("%w: diffusion operator (%d×%d)", ErrFactorize, n, n)
	}
	all := es.Values(nil) // ascending
	var q mat.Dense
	es.VectorsTo(&q)
	defl, best := -1, -1.0
	for c := 0; c < n; c++ {
		var d float64
		for i := 0; i < n; i++ {
			d += q.At(i, c) * v0[i]
		}
		if math.Abs(d) > best {
			defl, best = c, math.Abs(d)
		}
	}
	vals := make([]float64, 0, n-1)
	vecs := mat.NewDense(n, dims, nil)
	for c := n - 1; c >= 0; c-- {
		if c == defl {
			continue
		}
		if k := len(vals); k < dims {
			for i := 0; i < n; i++ {
				vecs.Set(i, k, q.At(i, c))
			}
		}
		vals = append(vals, all[c])
	}
	return vals, vecs, nil
}
