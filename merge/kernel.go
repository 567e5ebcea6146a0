package merge

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// sqDistances returns the n×n squared Euclidean distances between the rows of
// x in row-major order, computed from the Gram matrix of the column-centred
// rows. The result is exactly symmetric with a zero diagonal.
//
// The centred copy is made one panel of columns at a time, so that it stays
// in cache and the cost is that of the rank-k updates (n²d flops).
func sqDistances(x *mat.Dense) []float64 {
	n, d := x.Dims()
	mean := columnMeans(x)
	const panel = 256
	w0 := min(panel, d)
	buf := make([]float64, n*w0)
	g := blas64.Symmetric{N: n, Stride: n, Data: make([]float64, n*n), Uplo: blas.Upper}
	for c0 := 0; c0 < d; c0 += panel {
		w := min(panel, d-c0)
		p := blas64.General{Rows: n, Cols: w, Stride: w, Data: buf[:n*w]}
		for i := 0; i < n; i++ {
			dst := p.Data[i*w : i*w+w]
			copy(dst, x.RawRowView(i)[c0:c0+w])
			blas64.Implementation().Daxpy(w, -1, mean[c0:c0+w], 1, dst, 1)
		}
		beta := 1.0
		if c0 == 0 {
			beta = 0
		}
		blas64.Syrk(blas.NoTrans, 1, p, beta, g)
	}
	out := g.Data // the upper triangle holds G; reuse the storage.
	diag := make([]float64, n)
	for i := range diag {
		diag[i] = out[i*n+i]
	}
	for i := 0; i < n; i++ {
		out[i*n+i] = 0
		for j := i + 1; j < n; j++ {
			v := max(diag[i]+diag[j]-2*out[i*n+j], 0)
			out[i*n+j] = v
			out[j*n+i] = v
		}
	}
	return out
}

// columnMeans returns the mean of each column of x.
func columnMeans(x *mat.Dense) []float64 {
	n, d := x.Dims()
	mean := make([]float64, d)
	for i := 0; i < n; i++ {
		blas64.Implementation().Daxpy(d, 1, x.RawRowView(i), 1, mean, 1)
	}
	inv := 1 / float64(n)
	for j := range mean {
		mean[j] *= inv
	}
	return mean
}

// centerColumns returns a copy of x with each column's mean subtracted.
func centerColumns(x *mat.Dense) blas64.General {
	n, d := x.Dims()
	mean := columnMeans(x)
	c := blas64.General{Rows: n, Cols: d, Stride: d, Data: make([]float64, n*d)}
	for i := 0; i < n; i++ {
		row := c.Data[i*d : i*d+d]
		copy(row, x.RawRowView(i))
		blas64.Implementation().Daxpy(d, -1, mean, 1, row, 1)
	}
	return c
}

// kernelMatrix returns the n×n kernel matrix for squared distances d2.
func kernelMatrix(d2 []float64, n int, kind Kernel) ([]float64, error) {
	var vals []float64
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			if v := d2[i*n+j]; v > 0 {
				vals = append(vals, v)
			}
		}
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("%w: all %d samples are equal", ErrDegenerate, n)
	}
	k := make([]float64, n*n)
	switch kind {
	case KernelMedian:
		s2 := median(vals)
		c := -1 / (2 * s2)
		for i, v := range d2 {
			k[i] = math.Exp(c * v)
		}
	case KernelPaper:
		for i, v := range d2 {
			k[i] = math.Exp(-math.Sqrt(math.Sqrt(v) / 8))
		}
	}
	return k, nil
}

// median returns the median of vals, averaging the two middle values for an
// even count. vals is reordered.
func median(vals []float64) float64 {
	slices.Sort(vals)
	m := len(vals)
	if m%2 == 1 {
		return vals[m/2]
	}
	return (vals[m/2-1] + vals[m/2]) / 2
}

// alphaNormalize returns K̃_ij = K_ij / (q_i^α q_j^α) with q_i = Σ_j K_ij.
func alphaNormalize(k []float64, n int, alpha float64) []float64 {
	qa := make([]float64, n)
	for i := 0; i < n; i++ {
		var q float64
		for _, v := range k[i*n : i*n+n] {
			q += v
		}
		qa[i] = math.Pow(q, alpha)
	}
	out := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			out[i*n+j] = k[i*n+j] / (qa[i] * qa[j])
		}
	}
	return out
}

// markovSym returns A = D^-1/2 K̃ D^-1/2 (row-major, n×n) for the
// α-normalised kernel, and its trivial unit eigenvector v0 = sqrt(d/Σd).
// Every row of k has K_ii = 1, so all row sums are positive.
func markovSym(k []float64, n int, alpha float64) (a, v0 []float64) {
	a = alphaNormalize(k, n, alpha)
	deg := make([]float64, n)
	var total float64
	for i := 0; i < n; i++ {
		var s float64
		for _, v := range a[i*n : i*n+n] {
			s += v
		}
		deg[i] = s
		total += s
	}
	is := make([]float64, n)
	v0 = make([]float64, n)
	for i, s := range deg {
		is[i] = 1 / math.Sqrt(s)
		v0[i] = math.Sqrt(s / total)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			a[i*n+j] *= is[i] * is[j]
		}
	}
	// A is exactly symmetric: K is, and each entry is scaled by the
	// commutative products qa_i·qa_j and is_i·is_j.
	return a, v0
}

// parallelFor calls fn(0) … fn(n-1) on up to GOMAXPROCS goroutines and
// waits for all of them.
func parallelFor(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
