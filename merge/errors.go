package merge

import "errors"

// Errors returned by this package. Returned errors wrap one of these with
// context, so test them with errors.Is.
var (
	// ErrTooFewSamples is returned by DiffusionMap when there are fewer than
	// Dims+2 samples.
	ErrTooFewSamples = errors.New("merge: too few samples")

	// ErrDegenerate is returned by DiffusionMap when the samples do not
	// support the requested coordinates: all points are equal, or fewer
	// than Dims non-trivial eigenvalues are positive (too few distinct
	// points).
	ErrDegenerate = errors.New("merge: degenerate input")

	// ErrFactorize is returned when an eigendecomposition fails to converge.
	ErrFactorize = errors.New("merge: eigendecomposition failed")

	// ErrOption is returned for an invalid option value.
	ErrOption = errors.New("merge: invalid option")

	// ErrCount is returned by the planners when the number of blocks to
	// remove is not in [1, L-1] (or leaves no room after protected blocks).
	ErrCount = errors.New("merge: invalid number of blocks to remove")

	// ErrScore is returned by the planners for a score of the wrong size or
	// one that is NaN or infinite.
	ErrScore = errors.New("merge: invalid scores")

	// ErrPlan is returned by Plan.Validate and NewPlan for an inconsistent
	// plan.
	ErrPlan = errors.New("merge: invalid plan")
)
