// Package merge holds the mathematics behind mka-gguf: layer representations
// from calibration activations, similarities between layers, and plans that
// say which decoder blocks to drop or fuse and with what weights.
//
// The package is pure Go. It imports only the standard library and gonum, and
// it never touches GGUF files or llama.cpp: callers collect activations, turn
// them into matrices, ask for a [Plan], and apply its Layout to the weights
// with [Fuse].
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
//     (Liu et al. 2024).
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
// Logarithms are natural, information is in nats. Shape mismatches and other
// programmer errors panic with a "merge: " message, and each function's
// documentation says when. Data-dependent failures (degenerate inputs, a
// failed eigendecomposition, an impossible plan) are returned as errors that
// wrap the sentinels in this package, so callers can use errors.Is.
//
// Hot loops that a SIMD kernel can replace later are marked "hot loop" in
// their comments; each one is a plain reference loop.
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
