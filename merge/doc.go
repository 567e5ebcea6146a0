// Package merge holds the mathematics behind mka-gguf: layer representations
// from calibration activations, similarities between layers, plans that say
// which decoder blocks to drop or fuse and with what weights, and the
// least-squares alignment folded into a surviving block.
//
// The package is pure Go (gonum, and package simd's kernels): it never
// touches GGUF files or llama.cpp. Callers collect activations, turn them
// into matrices, ask for a [Plan], and apply its Layout to the weights with
// package merge/edit (which also folds the alignments); package merge/arch
// says which architectures and which of their tensors.
//
// # Pipeline
//
// For each layer representation (N calibration samples × d hidden features):
//
//  1. [DiffusionMap] (or [DiffusionMaps] for all layers) embeds the N samples
//     into a few diffusion coordinates (Coifman and Lafon 2006).
//  2. [NPIB] compares two layers' coordinates with a normalised mutual
//     information; [SimilarityMatrix] fills the matrix for all pairs.
//  3. [PlanMKA] turns the matrix into a sequence of adjacent-block fusions
//     (Liu et al. 2024), each with its weight λ (the paper's λ = S by
//     default); a fused block's tensors are Σ w_k θ_k over the Layout.
//
// The alignment of a surviving block to the blocks removed after it
// (ReplaceMe, Shopkhoev et al. 2025) is [AlignStats], accumulated over
// calibration tokens, and its [Alignment], solved in closed form;
// [Alignment.Fold] applies it to a weight.
//
// The baselines share the calibration pass: [PlanPruneReverse] (no data),
// [PlanPruneBI] from [CosineSum] and [BlockInfluence] (ShortGPT), and
// [PlanPruneAngular] from [AngularMatrix] (Gromov et al.). [LinearCKA] is an
// alternative similarity measure for [SimilarityMatrix].
//
// # Where this differs from the published MKA code
//
// The published code computes a 1-D KSG mutual information four times and
// averages, divides by k-NN entropies that can be negative, and so produces
// an unbounded similarity; it uses a fixed kernel bandwidth and never applies
// its merges. This package uses a Gaussian-copula estimate with a normalisation
// that is provably in [0, 1] (see [NPIB]), a median bandwidth by default
// (the published kernel is available as [KernelPaper]), and plans whose Layout
// states exactly which original blocks make up each output block.
//
// # Conventions
//
// Logarithms are natural, information is in nats. Programmer errors in the
// similarity and signal functions (slices or matrices of mismatched shapes)
// panic with a "merge: " message, and each function's documentation says
// when.
// Data-dependent failures (degenerate inputs, a failed eigendecomposition,
// an impossible plan, a weight of the wrong size for an alignment) are
// returned as errors that wrap the sentinels in this package, so callers
// can use errors.Is.
//
// # References
//
//   - D. Liu et al., "Pruning via Merging: Compressing LLMs via Manifold
//     Alignment Based Layer Merging", EMNLP 2024, arXiv:2406.16330 (MKA).
//   - R. R. Coifman and S. Lafon, "Diffusion maps", Applied and
//     Computational Harmonic Analysis 21(1):5–30, 2006.
//   - X. Men et al., "ShortGPT: Layers in Large Language Models are More
//     Redundant Than You Expect", arXiv:2403.03853, 2024 (Block Influence).
//   - A. Gromov et al., "The Unreasonable Ineffectiveness of the Deeper
//     Layers", arXiv:2403.17887, 2024 (angular distance).
//   - S. Kornblith et al., "Similarity of Neural Network Representations
//     Revisited", ICML 2019, arXiv:1905.00414 (CKA).
//   - R. A. A. Ince et al., "A statistical framework for neuroimaging data
//     analysis based on mutual information estimated via a gaussian copula",
//     Human Brain Mapping 38(3):1541–1573, 2017 (Gaussian-copula MI).
//   - R. A. Horn and C. R. Johnson, "Topics in Matrix Analysis", Cambridge
//     University Press, 1991, Thm. 3.3.4 (Horn's singular value product
//     inequality, used in the bound of [NPIB]).
package merge
