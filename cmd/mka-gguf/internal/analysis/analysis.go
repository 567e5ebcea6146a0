// Package analysis turns a calibration pass into layer similarities: the
// diffusion-map manifolds and NPIB matrix that MKA plans with, and the
// baselines' measures (Block Influence, angular distance, linear CKA).
package analysis

import (
	"fmt"
	"sort"

	"gonum.org/v1/gonum/mat"

	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/calib"
	"github.com/mka-gguf/mka-gguf/cmd/mka-gguf/internal/usage"
	"github.com/mka-gguf/mka-gguf/merge"
)

// Options selects how representations are compared.
type Options struct {
	// Rep is the representation of a sample (RepMean when empty).
	Rep Rep
	// Kernel is the diffusion kernel's bandwidth (KernelMedian when empty).
	Kernel Kernel
	// Dims is the number of diffusion coordinates (0: merge.DefaultDims).
	Dims int
}

// Rep is how a sample is represented for the manifolds and CKA (--rep).
type Rep string

const (
	RepMean Rep = "mean" // each sample's mean over its tokens
	RepLast Rep = "last" // its last token
)

// Reps are the Rep values.
var Reps = []Rep{RepMean, RepLast}

// ParseRep parses --rep.
func ParseRep(s string) (Rep, error) { return usage.Choice("rep", s, Reps) }

// Kernel is the diffusion kernel's bandwidth (--kernel).
type Kernel string

const (
	KernelMedian Kernel = "median" // the median heuristic
	KernelPaper  Kernel = "paper"  // the published code's exp(-sqrt(D/8))
)

// Kernels are the Kernel values.
var Kernels = []Kernel{KernelMedian, KernelPaper}

// ParseKernel parses --kernel.
func ParseKernel(s string) (Kernel, error) { return usage.Choice("kernel", s, Kernels) }

// Validate checks the choices (empty ones are the defaults).
func (o Options) Validate() error {
	if o.Rep != "" {
		if _, err := ParseRep(string(o.Rep)); err != nil {
			return err
		}
	}
	if o.Kernel != "" {
		if _, err := ParseKernel(string(o.Kernel)); err != nil {
			return err
		}
	}
	return nil
}

// withDefaults checks the choices and fills the empty ones.
func (o Options) withDefaults() (Options, error) {
	if o.Rep == "" {
		o.Rep = RepMean
	}
	if o.Kernel == "" {
		o.Kernel = KernelMedian
	}
	return o, o.Validate()
}

// Analysis holds every measure. Matrices are indexed by representation:
// 0 is the input of block 0, i (1..Blocks) the output of block i−1.
type Analysis struct {
	Blocks    int         `json:"blocks"`
	Rep       string      `json:"representation"`
	Kernel    string      `json:"kernel"`
	Dims      int         `json:"diffusion_dims"`
	Estimator string      `json:"estimator"`
	Layers    []string    `json:"layers"`
	NPIB      [][]float64 `json:"npib"`
	CKA       [][]float64 `json:"cka"`
	Angular   [][]float64 `json:"angular"`
	BI        []float64   `json:"block_influence"`

	npib *mat.SymDense
	ang  *mat.Dense
}

// LayerNames returns "input" and "blk.0" … "blk.(L−1)".
func LayerNames(blocks int) []string {
	names := []string{"input"}
	for i := range blocks {
		names = append(names, fmt.Sprintf("blk.%d", i))
	}
	return names
}

func toDense(flat []float32, n, d int) *mat.Dense {
	v := make([]float64, n*d)
	for i, x := range flat {
		v[i] = float64(x)
	}
	return mat.NewDense(n, d, v)
}

func rows(m mat.Matrix) [][]float64 {
	r, c := m.Dims()
	out := make([][]float64, r)
	for i := range out {
		out[i] = make([]float64, c)
		for j := range c {
			out[i][j] = m.At(i, j)
		}
	}
	return out
}

// Compute runs the diffusion maps, NPIB, CKA and angular distances on a
// calibration result.
func Compute(res *calib.Result, opt Options) (*Analysis, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	dopt := merge.DiffusionOptions{Dims: opt.Dims, Kernel: merge.KernelMedian}
	if opt.Kernel == KernelPaper {
		dopt.Kernel = merge.KernelPaper
	}
	src := res.Mean
	if opt.Rep == RepLast {
		src = res.Last
	}
	n, d := res.Samples, res.Embd
	reps := make([]*mat.Dense, len(src))
	for l := range src {
		reps[l] = toDense(src[l], n, d)
	}
	coords, err := merge.DiffusionMaps(reps, dopt)
	if err != nil {
		return nil, fmt.Errorf("diffusion maps: %w", err)
	}
	npib := merge.SimilarityMatrix(coords, merge.NPIB)
	cka := merge.SimilarityMatrix(reps, merge.LinearCKA)
	last := make([]*mat.Dense, len(res.Last))
	for l := range res.Last {
		last[l] = toDense(res.Last[l], n, d)
	}
	ang := merge.AngularMatrix(last)
	dims := opt.Dims
	if dims == 0 {
		dims = merge.DefaultDims
	}
	return &Analysis{
		Blocks: res.Blocks, Rep: string(opt.Rep), Kernel: string(opt.Kernel), Dims: dims,
		Estimator: "gaussian-copula normalised MI (noise δ=0.01)",
		Layers:    LayerNames(res.Blocks),
		NPIB:      rows(npib), CKA: rows(cka), Angular: rows(ang), BI: res.BlockInfluence(),
		npib: npib, ang: ang,
	}, nil
}

// BlockSimilarity returns the L×L NPIB matrix between block outputs (the
// representations 1..L), which MKA plans with.
func (a *Analysis) BlockSimilarity() *mat.SymDense {
	l := a.Blocks
	s := mat.NewSymDense(l, nil)
	for i := range l {
		for j := i; j < l; j++ {
			s.SetSym(i, j, a.npib.At(i+1, j+1))
		}
	}
	return s
}

// AngularMatrix returns the (L+1)×(L+1) angular distance matrix.
func (a *Analysis) AngularMatrix() *mat.Dense { return a.ang }

// Pair is an adjacent pair of blocks and their similarities.
type Pair struct {
	A, B int
	NPIB float64
	CKA  float64
}

// RankedPairs returns the adjacent block pairs (i, i+1), most similar (by
// NPIB of their outputs) first.
func (a *Analysis) RankedPairs() []Pair {
	var p []Pair
	for i := 0; i+1 < a.Blocks; i++ {
		p = append(p, Pair{A: i, B: i + 1, NPIB: a.NPIB[i+1][i+2], CKA: a.CKA[i+1][i+2]})
	}
	sort.SliceStable(p, func(i, j int) bool { return p[i].NPIB > p[j].NPIB })
	return p
}
