package merge

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

func randDense(r *rand.Rand, n, d int) *mat.Dense {
	x := mat.NewDense(n, d, nil)
	for i := range x.RawMatrix().Data {
		x.RawMatrix().Data[i] = r.NormFloat64()
	}
	return x
}

// embed places the rows of p (n×k) in d ≥ k dimensions with a random
// rotation and a large common offset, so that tests exercise centring.
func embed(r *rand.Rand, p *mat.Dense, d int, offset float64) *mat.Dense {
	n, k := p.Dims()
	var qr mat.QR
	qr.Factorize(randDense(r, d, d))
	var q mat.Dense
	qr.QTo(&q)
	var x mat.Dense
	x.Mul(p, q.Slice(0, k, 0, d))
	shift := make([]float64, d)
	for j := range shift {
		shift[j] = offset * r.NormFloat64()
	}
	for i := 0; i < n; i++ {
		row := x.RawRowView(i)
		for j := range row {
			row[j] += shift[j]
		}
	}
	return &x
}

func TestSqDistances(t *testing.T) {
	r := newRand(1)
	x := randDense(r, 9, 6)
	// A large shared offset: the Gram form must still be accurate.
	for i := 0; i < 9; i++ {
		for j := 0; j < 6; j++ {
			x.Set(i, j, x.At(i, j)+1e3)
		}
	}
	got := sqDistances(x)
	const tol = 1e-9 // relative to the O(10) distances; offset² = 1e6
	for i := 0; i < 9; i++ {
		for j := 0; j < 9; j++ {
			var want float64
			for k := 0; k < 6; k++ {
				d := x.At(i, k) - x.At(j, k)
				want += d * d
			}
			if g := got[i*9+j]; math.Abs(g-want) > tol*max(1, want) {
				t.Errorf("D²(%d,%d) = %v, want %v", i, j, g, want)
			}
			if got[i*9+j] != got[j*9+i] {
				t.Errorf("D² not exactly symmetric at (%d,%d)", i, j)
			}
		}
		if got[i*9+i] != 0 {
			t.Errorf("D²(%d,%d) = %v, want 0", i, i, got[i*9+i])
		}
	}
}

func TestKernelAndAlphaThreePoints(t *testing.T) {
	// Points 0, 1, 3 on a line: D = 1 (0-1), 3 (0-2), 2 (1-2).
	x := mat.NewDense(3, 1, []float64{0, 1, 3})
	d2 := sqDistances(x)

	// Median kernel: nonzero D² = {1, 9, 4}, median 4 = σ², K = exp(-D²/8).
	km, err := kernelMatrix(d2, 3, KernelMedian)
	if err != nil {
		t.Fatal(err)
	}
	wantM := []float64{
		1, math.Exp(-1.0 / 8), math.Exp(-9.0 / 8),
		math.Exp(-1.0 / 8), 1, math.Exp(-4.0 / 8),
		math.Exp(-9.0 / 8), math.Exp(-4.0 / 8), 1,
	}
	// Paper kernel: K = exp(-sqrt(D/8)).
	kp, err := kernelMatrix(d2, 3, KernelPaper)
	if err != nil {
		t.Fatal(err)
	}
	e1, e3, e2 := math.Exp(-math.Sqrt(1.0/8)), math.Exp(-math.Sqrt(3.0/8)), math.Exp(-0.5)
	wantP := []float64{1, e1, e3, e1, 1, e2, e3, e2, 1}
	const tol = 1e-14
	for i := range wantM {
		if math.Abs(km[i]-wantM[i]) > tol {
			t.Errorf("median kernel[%d] = %v, want %v", i, km[i], wantM[i])
		}
		if math.Abs(kp[i]-wantP[i]) > tol {
			t.Errorf("paper kernel[%d] = %v, want %v", i, kp[i], wantP[i])
		}
	}

	// α = 0.5 by hand on the paper kernel: q = row sums, K̃ = K/sqrt(q_i q_j).
	q := []float64{1 + e1 + e3, e1 + 1 + e2, e3 + e2 + 1}
	kt := alphaNormalize(kp, 3, 0.5)
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			want := wantP[i*3+j] / math.Sqrt(q[i]*q[j])
			if math.Abs(kt[i*3+j]-want) > tol {
				t.Errorf("K̃(%d,%d) = %v, want %v", i, j, kt[i*3+j], want)
			}
		}
	}
	// α = 1: K̃ = K/(q_i q_j); α = 0: K̃ = K.
	kt1 := alphaNormalize(kp, 3, 1)
	kt0 := alphaNormalize(kp, 3, 0)
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			if want := wantP[i*3+j] / (q[i] * q[j]); math.Abs(kt1[i*3+j]-want) > tol {
				t.Errorf("α=1 K̃(%d,%d) = %v, want %v", i, j, kt1[i*3+j], want)
			}
			if kt0[i*3+j] != wantP[i*3+j] {
				t.Errorf("α=0 K̃(%d,%d) = %v, want %v", i, j, kt0[i*3+j], wantP[i*3+j])
			}
		}
	}

	// The 3-point map: ψ_1 is a right eigenvector of P = D⁻¹K̃ (checked
	// generally in TestDiffusionEigenpairs); here its ordering: 0 and 3
	// are the extremes, so ψ_1(1) lies between ψ_1(0) and ψ_1(2).
	y, err := DiffusionMap(x, DiffusionOptions{Kernel: KernelPaper, Dims: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := y.At(0, 0), y.At(1, 0), y.At(2, 0)
	if !(a < b && b < c) && !(a > b && b > c) {
		t.Errorf("ψ_1 = %v %v %v, want monotone", a, b, c)
	}
}

// naiveMarkov builds P = D⁻¹K̃ with plain loops from the definition, for the
// median or paper kernel, and returns P and π.
func naiveMarkov(x *mat.Dense, kernel Kernel, alpha float64) (p [][]float64, pi []float64) {
	n, d := x.Dims()
	dist2 := make([][]float64, n)
	var nz []float64
	for i := range dist2 {
		dist2[i] = make([]float64, n)
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < d; k++ {
				v := x.At(i, k) - x.At(j, k)
				s += v * v
			}
			dist2[i][j] = s
			if j > i && s > 0 {
				nz = append(nz, s)
			}
		}
	}
	slices.Sort(nz)
	var s2 float64
	if m := len(nz); m%2 == 1 {
		s2 = nz[m/2]
	} else {
		s2 = (nz[m/2-1] + nz[m/2]) / 2
	}
	k := make([][]float64, n)
	q := make([]float64, n)
	for i := range k {
		k[i] = make([]float64, n)
		for j := range k[i] {
			if kernel == KernelMedian {
				k[i][j] = math.Exp(-dist2[i][j] / (2 * s2))
			} else {
				k[i][j] = math.Exp(-math.Sqrt(math.Sqrt(dist2[i][j]) / 8))
			}
			q[i] += k[i][j]
		}
	}
	deg := make([]float64, n)
	var tot float64
	for i := range k {
		for j := range k[i] {
			k[i][j] /= math.Pow(q[i], alpha) * math.Pow(q[j], alpha)
			deg[i] += k[i][j]
		}
		tot += deg[i]
	}
	p = make([][]float64, n)
	pi = make([]float64, n)
	for i := range k {
		p[i] = make([]float64, n)
		for j := range k[i] {
			p[i][j] = k[i][j] / deg[i]
		}
		pi[i] = deg[i] / tot
	}
	return p, pi
}

func TestDiffusionEigenpairs(t *testing.T) {
	r := newRand(2)
	x := embed(r, randDense(r, 30, 3), 8, 50)
	for _, kern := range []Kernel{KernelMedian, KernelPaper} {
		for _, alpha := range []float64{0, 0.5, 1} {
			opt := DiffusionOptions{Kernel: kern, Alpha: alpha, Dims: 3, T: 2}
			if alpha == 0 {
				opt.Alpha = -1
			}
			pr, err := opt.params()
			if err != nil {
				t.Fatal(err)
			}
			res, err := diffusion(x, pr)
			if err != nil {
				t.Fatal(err)
			}
			p, pi := naiveMarkov(x, kern, alpha)
			n := 30
			for i, v := range res.values {
				if !(v < 1 && v > -1) {
					t.Errorf("%v α=%v: non-trivial eigenvalue %d = %v not in (-1, 1)", kern, alpha, i, v)
				}
				if i > 0 && v > res.values[i-1] {
					t.Errorf("eigenvalues not descending at %d", i)
				}
			}
			for k := 0; k < 3; k++ {
				lam := res.values[k]
				var norm, mean float64
				for i := 0; i < n; i++ {
					var ppsi float64
					for j := 0; j < n; j++ {
						ppsi += p[i][j] * res.psi.At(j, k)
					}
					if math.Abs(ppsi-lam*res.psi.At(i, k)) > 1e-9 {
						t.Errorf("%v α=%v: (Pψ_%d)(%d) = %v, want λψ = %v", kern, alpha, k+1, i, ppsi, lam*res.psi.At(i, k))
					}
					norm += pi[i] * res.psi.At(i, k) * res.psi.At(i, k)
					mean += pi[i] * res.psi.At(i, k)
					// Coordinates are λ^T ψ.
					if got, want := res.coords.At(i, k), lam*lam*res.psi.At(i, k); math.Abs(got-want) > 1e-12 {
						t.Errorf("coord = %v, want λ²ψ = %v", got, want)
					}
				}
				if math.Abs(norm-1) > 1e-9 {
					t.Errorf("Σ π ψ_%d² = %v, want 1", k+1, norm)
				}
				if math.Abs(mean) > 1e-9 {
					t.Errorf("Σ π ψ_%d = %v, want 0 (orthogonal to the trivial ψ_0)", k+1, mean)
				}
			}
		}
	}
}

func TestDiffusionGaussianEigenvaluesPositive(t *testing.T) {
	// The Gaussian kernel is positive definite, so all eigenvalues of A
	// are in (0, 1]; the trivial 1 is dropped and the rest are < 1.
	r := newRand(3)
	x := embed(r, randDense(r, 25, 4), 10, 0)
	res, err := diffusion(x, diffusionParams{kernel: KernelMedian, alpha: 0.5, dims: 4, t: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.values) != 24 {
		t.Fatalf("%d non-trivial eigenvalues, want N-1 = 24", len(res.values))
	}
	for i, v := range res.values {
		if !(v > 0 && v < 1) {
			t.Errorf("eigenvalue %d = %v, want in (0, 1)", i, v)
		}
	}
}

func shuffled(r *rand.Rand, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r.Shuffle(n, func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p
}

func TestDiffusionLineOrdering(t *testing.T) {
	r := newRand(4)
	const n = 40
	perm := shuffled(r, n)
	tpar := make([]float64, n)
	p := mat.NewDense(n, 1, nil)
	for i, k := range perm {
		tpar[i] = float64(k) / (n - 1)
		p.Set(i, 0, 10*tpar[i])
	}
	for _, kern := range []Kernel{KernelMedian, KernelPaper} {
		// The paper kernel has no bandwidth: its neighbourhoods are local
		// only when the points are far apart compared with 8 (on a line of
		// length 10 its ψ_1 bends back near both ends).
		scale := 1.0
		if kern == KernelPaper {
			scale = 100
		}
		var ps mat.Dense
		ps.Scale(scale, p)
		x := embed(r, &ps, 16, 100)
		y, err := DiffusionMap(x, DiffusionOptions{Kernel: kern})
		if err != nil {
			t.Fatal(err)
		}
		if _, c := y.Dims(); c != DefaultDims {
			t.Fatalf("%d coordinates, want %d", c, DefaultDims)
		}
		// Sort samples by the line parameter: ψ_1 must be strictly monotone.
		byT := make([]int, n)
		for i := range byT {
			byT[i] = i
		}
		slices.SortFunc(byT, func(a, b int) int { return int(perm[a] - perm[b]) })
		dir := math.Copysign(1, y.At(byT[n-1], 0)-y.At(byT[0], 0))
		for i := 1; i < n; i++ {
			if dir*(y.At(byT[i], 0)-y.At(byT[i-1], 0)) <= 0 {
				t.Errorf("%v: ψ_1 not monotone in t at t=%v", kern, tpar[byT[i]])
			}
		}
	}
}

func TestDiffusionCircleOrdering(t *testing.T) {
	r := newRand(5)
	const n = 60
	perm := shuffled(r, n)
	p := mat.NewDense(n, 2, nil)
	for i, k := range perm {
		th := 2 * math.Pi * float64(k) / n
		p.Set(i, 0, 3*math.Cos(th))
		p.Set(i, 1, 3*math.Sin(th))
	}
	x := embed(r, p, 12, 20)
	y, err := DiffusionMap(x, DiffusionOptions{Dims: 2})
	if err != nil {
		t.Fatal(err)
	}
	// (ψ_1, ψ_2) spans the circle's first Fourier pair (an arbitrary basis
	// of a 2-D eigenspace): its angle must advance in one direction.
	at := make([]int, n)
	for i, k := range perm {
		at[k] = i
	}
	var sign float64
	for k := 0; k < n; k++ {
		a, b := at[k], at[(k+1)%n]
		d := math.Atan2(y.At(b, 1), y.At(b, 0)) - math.Atan2(y.At(a, 1), y.At(a, 0))
		d = math.Remainder(d, 2*math.Pi)
		if sign == 0 {
			sign = math.Copysign(1, d)
		}
		if sign*d <= 0 || math.Abs(d) > 0.5 {
			t.Errorf("angle step %d -> %d = %v, want a small step of sign %v", k, k+1, d, sign)
		}
	}
}

func TestDiffusionSignAndDeterminism(t *testing.T) {
	r := newRand(6)
	x := randDense(r, 50, 20)
	y1, err := DiffusionMap(x, DiffusionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y2, _ := DiffusionMap(x, DiffusionOptions{})
	if !mat.Equal(y1, y2) {
		t.Error("DiffusionMap is not deterministic")
	}
	n, k := y1.Dims()
	for c := 0; c < k; c++ {
		arg, big := 0, -1.0
		for i := 0; i < n; i++ {
			if v := math.Abs(y1.At(i, c)); v > big {
				arg, big = i, v
			}
		}
		if y1.At(arg, c) <= 0 {
			t.Errorf("coordinate %d: largest-magnitude entry %v is not positive", c, y1.At(arg, c))
		}
	}
	// Many layers at once give the same answer.
	ys, err := DiffusionMaps([]*mat.Dense{x, x, x}, DiffusionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, y := range ys {
		if !mat.Equal(y, y1) {
			t.Errorf("DiffusionMaps layer %d differs from DiffusionMap", i)
		}
	}
}

func TestDiffusionDisconnected(t *testing.T) {
	// Two clusters so far apart that the kernel between them is below
	// 1e-150: λ_1 = 1 to machine precision and ψ_1 separates the clusters.
	r := newRand(7)
	x := randDense(r, 20, 3)
	for i := 10; i < 20; i++ {
		x.Set(i, 0, x.At(i, 0)+1e6)
	}
	res, err := diffusion(x, diffusionParams{kernel: KernelPaper, alpha: 0.5, dims: 2, t: 1})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.values[0]-1) > 1e-12 {
		t.Errorf("λ_1 = %v, want 1 for a disconnected graph", res.values[0])
	}
	for i := 1; i < 10; i++ {
		if res.psi.At(i, 0) != res.psi.At(0, 0) && math.Abs(res.psi.At(i, 0)-res.psi.At(0, 0)) > 1e-9 {
			t.Errorf("ψ_1 not constant on cluster 1")
		}
		if math.Signbit(res.psi.At(i, 0)) == math.Signbit(res.psi.At(10+i, 0)) {
			t.Errorf("ψ_1 does not separate the clusters at %d", i)
		}
	}
}

func TestDiffusionErrors(t *testing.T) {
	r := newRand(8)
	same := mat.NewDense(10, 4, nil)
	for i := 0; i < 10; i++ {
		same.SetRow(i, []float64{1, 2, 3, 4})
	}
	twoPoints := mat.NewDense(10, 2, nil)
	for i := 0; i < 10; i++ {
		twoPoints.Set(i, 0, float64(i%2))
	}
	for _, tc := range []struct {
		name string
		x    *mat.Dense
		opt  DiffusionOptions
		want error
	}{
		{"all equal", same, DiffusionOptions{Dims: 2}, ErrDegenerate},
		{"all equal paper", same, DiffusionOptions{Dims: 2, Kernel: KernelPaper}, ErrDegenerate},
		{"two distinct points", twoPoints, DiffusionOptions{Dims: 2}, ErrDegenerate},
		{"N < Dims+2", randDense(r, 5, 3), DiffusionOptions{}, ErrTooFewSamples},
		{"N = Dims+1", randDense(r, 3, 3), DiffusionOptions{Dims: 2}, ErrTooFewSamples},
		{"bad kernel", randDense(r, 10, 3), DiffusionOptions{Kernel: 7}, ErrOption},
		{"alpha > 1", randDense(r, 10, 3), DiffusionOptions{Alpha: 1.5}, ErrOption},
		{"alpha NaN", randDense(r, 10, 3), DiffusionOptions{Alpha: math.NaN()}, ErrOption},
		{"dims < 0", randDense(r, 10, 3), DiffusionOptions{Dims: -1}, ErrOption},
		{"T inf", randDense(r, 10, 3), DiffusionOptions{T: math.Inf(1)}, ErrOption},
	} {
		_, err := DiffusionMap(tc.x, tc.opt)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// N = Dims+2 is enough.
	if _, err := DiffusionMap(randDense(r, 4, 3), DiffusionOptions{Dims: 2}); err != nil {
		t.Errorf("N = Dims+2: %v", err)
	}
	_, err := DiffusionMaps([]*mat.Dense{randDense(r, 10, 3), same}, DiffusionOptions{Dims: 2})
	if !errors.Is(err, ErrDegenerate) || err.Error()[:7] != "layer 1" {
		t.Errorf("DiffusionMaps error = %v, want layer 1 degenerate", err)
	}
}
