// 2-D layouts of activation vectors, for activation atlases (Carter et al., 2019): exact t-SNE (van der
// Maaten & Hinton, 2008, with the reference implementation's defaults), the percentile normalization of
// Lucid's activation-atlas recipe, and the grid of cells the atlas renders.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cnnviz {

struct TsneOptions {
  double perplexity = 30;   // effective neighbours; lowered to (N - 1) / 3 for small sets
  int64_t iterations = 1000;
  int64_t pca_dims = 50;    // vectors are centred, scaled by their largest |value| and projected first
  double learning_rate = 200;
  uint64_t seed = 0;        // the initial layout, N(0, 1e-4^2)
  void Check() const;
};

// Exact t-SNE of `points` [N, D] (N >= 4): [N, 2] float. Affinities by a binary search on each point's
// precision to the perplexity (tolerance 1e-5, at most 200 steps), symmetrized and normalized; gradient
// descent with momentum 0.5 then 0.8 from iteration 250, early exaggeration 12 until iteration 250,
// per-coordinate gains (+0.2 on a sign change, x0.8 otherwise, floor 0.01), re-centred every iteration.
// Memory and time are O(N^2): meant for up to a few thousand samples. Deterministic for a seed.
at::Tensor Tsne(const at::Tensor& points, const TsneOptions& options);

// Each axis clipped to its 1st-99th percentile widened by 10% of that span, then scaled to [0, 1]
// (Lucid's activation-atlas recipe): a few outliers do not squeeze the rest into a corner.
at::Tensor NormalizeLayout(const at::Tensor& layout);

// One cell of a grid x grid layout: its column x and row y, and the samples in it.
struct GridCell {
  int64_t x = 0, y = 0;
  std::vector<int64_t> members;
};
// Cells of `layout` [N, 2] in [0, 1] holding at least `min_count` samples; sample i falls in cell
// (min(floor(x grid), grid - 1), same for y). Row-major order (y, then x).
std::vector<GridCell> GridCells(const at::Tensor& layout, int64_t grid, int64_t min_count);

}  // namespace cnnviz
