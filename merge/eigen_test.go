package merge

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// symWithSpectrum returns Q diag(lam) Qᵀ for a random orthogonal Q.
func symWithSpectrum(seed uint64, lam []float64) *mat.SymDense {
	r := newRand(seed)
	n := len(lam)
	var qr mat.QR
	qr.Factorize(randDense(r, n, n))
	var q mat.Dense
	qr.QTo(&q)
	var qd, a mat.Dense
	qd.Mul(&q, mat.NewDiagDense(n, lam))
	a.Mul(&qd, q.T())
	s := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			s.SetSym(i, j, (a.At(i, j)+a.At(j, i))/2)
		}
	}
	return s
}

func TestTopEigenSym(t *testing.T) {
	r := newRand(50)
	var cases []*mat.SymDense
	for _, n := range []int{1, 2, 3, 10, 64} {
		s := mat.NewSymDense(n, nil)
		for i := 0; i < n; i++ {
			for j := i; j < n; j++ {
				s.SetSym(i, j, r.NormFloat64())
			}
		}
		cases = append(cases, s)
	}
	// Exactly repeated and tightly clustered top eigenvalues, a zero one,
	// and negative ones.
	cases = append(cases,
		symWithSpectrum(51, []float64{0.9, 0.9, 0.9, 0.5, 0.5, 0.1, 0, -0.3, 1e-12, 0.2}),
		symWithSpectrum(52, []float64{0.8, 0.8 - 1e-9, 0.8 - 2e-9, 0.7, 0.3, 0.3, 0.1, 0.05}),
		symWithSpectrum(53, []float64{1, 1, 0, 0, 0, 0}),
	)
	for ci, s := range cases {
		n := s.SymmetricDim()
		var es mat.EigenSym
		if !es.Factorize(s, false) {
			t.Fatal("EigenSym failed")
		}
		want := es.Values(nil)
		k := min(n, 5)
		a := make([]float64, n*n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				a[i*n+j] = s.At(i, j)
			}
		}
		vals, vecs, ok := topEigenSym(a, n, k)
		if !ok {
			t.Fatalf("case %d: topEigenSym failed", ci)
		}
		for i := range vals {
			if math.Abs(vals[i]-want[n-1-i]) > 1e-12 {
				t.Errorf("case %d: λ_%d = %v, want %v", ci, i, vals[i], want[n-1-i])
			}
		}
		z := mat.NewDense(n, k, vecs.Data)
		var az, ztz mat.Dense
		az.Mul(s, z)
		for j := 0; j < k; j++ {
			for i := 0; i < n; i++ {
				if res := az.At(i, j) - vals[j]*z.At(i, j); math.Abs(res) > 1e-11 {
					t.Errorf("case %d: (Az - λz)[%d,%d] = %v", ci, i, j, res)
				}
			}
		}
		ztz.Mul(z.T(), z)
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(ztz.At(i, j)-want) > 1e-10 {
					t.Errorf("case %d: (ZᵀZ)[%d,%d] = %v, want %v", ci, i, j, ztz.At(i, j), want)
				}
			}
		}
	}
}

func TestDiffusionFullEigenFallback(t *testing.T) {
	r := newRand(54)
	x := randDense(r, 60, 10)
	fast, err := DiffusionMap(x, DiffusionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	forceFullEigen = true
	defer func() { forceFullEigen = false }()
	full, err := DiffusionMap(x, DiffusionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !mat.EqualApprox(fast, full, 1e-9) {
		t.Error("fast and full eigensolver paths disagree")
	}
	fr, _ := diffusion(x, diffusionParams{kernel: KernelMedian, alpha: 0.5, dims: 4, t: 1})
	forceFullEigen = false
	qr, _ := diffusion(x, diffusionParams{kernel: KernelMedian, alpha: 0.5, dims: 4, t: 1})
	for i := range fr.values {
		if math.Abs(fr.values[i]-qr.values[i]) > 1e-12 {
			t.Errorf("λ_%d: full %v, fast %v", i+1, fr.values[i], qr.values[i])
		}
	}
}
