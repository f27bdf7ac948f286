#include "cnnviz/methods/embedding.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <map>

#include "cnnviz/core/error.h"

namespace cnnviz {

void TsneOptions::Check() const {
  if (!(perplexity >= 1)) throw UsageError("t-SNE perplexity must be at least 1");
  if (iterations < 1) throw UsageError("t-SNE iterations must be at least 1");
  if (pca_dims < 2) throw UsageError("t-SNE PCA dimensions must be at least 2");
  if (!(learning_rate > 0)) throw UsageError("t-SNE learning rate must be positive");
}

namespace {

// Squared Euclidean distances between the rows of x [N, D], double.
at::Tensor SquaredDistances(const at::Tensor& x) {
  const at::Tensor norms = x.pow(2).sum(1);
  return (norms.unsqueeze(1) + norms.unsqueeze(0) - 2 * at::mm(x, x.t())).clamp_min(0);
}

// Per row of distances d [N, N] (diagonal ignored), the Gaussian affinities whose entropy is
// ln(perplexity): a bisection on the precision beta of all rows at once, as the reference code does row
// by row (beta from 1, doubled or halved until bracketed, then halved intervals).
at::Tensor ConditionalAffinities(const at::Tensor& d, double perplexity) {
  const int64_t n = d.size(0);
  const double target = std::log(perplexity);
  at::Tensor beta = at::ones({n, 1}, at::kDouble);
  at::Tensor low = at::full({n, 1}, -INFINITY, at::kDouble), high = at::full({n, 1}, INFINITY, at::kDouble);
  const at::Tensor diagonal = at::eye(n, at::kDouble).to(at::kBool);
  at::Tensor p;
  for (int step = 0; step < 200; ++step) {
    // Shifting each row by its smallest distance leaves the normalized row unchanged and avoids underflow.
    // (The diagonal is masked, not multiplied by 0: its shifted distance is negative, exp of it can be inf.)
    const at::Tensor shifted = d - std::get<0>(d.masked_fill(diagonal, INFINITY).min(1, true));
    p = at::exp(-shifted * beta).masked_fill_(diagonal, 0);
    const at::Tensor sum = p.sum(1, true).clamp_min(1e-300);
    const at::Tensor entropy = at::log(sum) + beta * (shifted * p).sum(1, true) / sum;
    p = p / sum;
    const at::Tensor diff = entropy - target;
    // Done: every row at its perplexity, or unable to get there (a row of identical points keeps the
    // entropy of their count however large beta grows; a bracket that has collapsed).
    const at::Tensor done = (diff.abs() < 1e-5) | (beta > 1e20) | ((high - low) < beta * 1e-12);
    if (done.all().item<bool>()) break;
    // Entropy too high: the precision must grow.
    const at::Tensor up = diff > 0;
    low = at::where(up, beta, low);
    high = at::where(up, high, beta);
    beta = at::where(up, at::where(at::isinf(high), beta * 2, (beta + high) / 2),
                     at::where(at::isinf(low), beta / 2, (beta + low) / 2));
  }
  return p;
}

}  // namespace

at::Tensor Tsne(const at::Tensor& points, const TsneOptions& options) {
  options.Check();
  if (points.dim() != 2 || points.size(0) < 4) throw UsageError("t-SNE needs at least 4 points [N, D]");
  const int64_t n = points.size(0);
  at::Tensor x = points.to(at::kCPU, at::kDouble);
  x = x - x.mean(0, true);
  const double largest = x.abs().max().item<double>();
  if (largest > 0) x = x / largest;
  if (x.size(1) > options.pca_dims) {
    // PCA: the leading eigenvectors of the covariance, signs fixed (largest |component| positive) so
    // the projection does not depend on the eigen solver's sign choices.
    const auto [values, vectors] = at::linalg_eigh(at::mm(x.t(), x));
    at::Tensor top = vectors.narrow(1, vectors.size(1) - options.pca_dims, options.pca_dims).flip({1});
    const at::Tensor peak = top.abs().argmax(0);
    const at::Tensor sign = at::sign(top.gather(0, peak.unsqueeze(0))).clamp_min(0) * 2 - 1;
    x = at::mm(x, top * sign);
  }
  const double perplexity = std::min(options.perplexity, (static_cast<double>(n) - 1) / 3);
  at::Tensor p = ConditionalAffinities(SquaredDistances(x), std::max(perplexity, 1.0));
  p = p + p.t();
  p = (p / p.sum()).clamp_min(1e-12).to(at::kFloat);

  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed * 2654435761ULL + 11);
  at::Tensor y = at::normal(0.0, 1e-4, {n, 2}, generator, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat);
  at::Tensor update = at::zeros_like(y), gains = at::ones_like(y);
  const at::Tensor diagonal = at::eye(n, at::kFloat).to(at::kBool);
  constexpr int64_t kSwitch = 250;
  at::Tensor num = at::empty({n, n}, at::kFloat), w = at::empty({n, n}, at::kFloat);
  for (int64_t iteration = 0; iteration < options.iterations; ++iteration) {
    const double exaggeration = iteration < kSwitch ? 12.0 : 1.0;
    const double momentum = iteration < kSwitch ? 0.5 : 0.8;
    // num = 1 / (1 + |y_i - y_j|^2), off the diagonal; w = (p - q) num with q = num / sum(num). In place:
    // the N x N buffers are the cost (the reference code's gradient, q unclamped there as here).
    const at::Tensor norms = y.pow(2).sum(1);
    at::mm_out(num, y, y.t());
    num.mul_(-2).add_(norms.unsqueeze(1)).add_(norms.unsqueeze(0)).clamp_min_(0).add_(1).reciprocal_();
    num.masked_fill_(diagonal, 0);
    const double total = num.sum().item<double>();
    at::mul_out(w, num, -1.0 / total);
    w.add_(p, exaggeration).mul_(num);
    // w is symmetric, so w y = (y^T w)^T: the wide product is 3x faster than the skinny one with a
    // reference BLAS (Debian's: 14 ms against 4.7 ms at N = 2000).
    const at::Tensor gradient = w.sum(1, true) * y - at::mm(y.t().contiguous(), w).t();
    const at::Tensor same_sign = (gradient > 0) == (update > 0);
    gains = at::where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01);
    update = momentum * update - options.learning_rate * gains * gradient;
    y = y + update;
    y = y - y.mean(0, true);
  }
  return y;
}

at::Tensor NormalizeLayout(const at::Tensor& layout) {
  const at::Tensor values = layout.to(at::kCPU, at::kDouble);
  std::vector<at::Tensor> axes;
  for (int64_t a = 0; a < values.size(1); ++a) {
    const at::Tensor axis = values.select(1, a);
    const double low = at::quantile(axis, 0.01).item<double>(), high = at::quantile(axis, 0.99).item<double>();
    const double margin = 0.1 * (high - low);
    const double from = low - margin, to = high + margin;
    const double span = to - from > 0 ? to - from : 1.0;
    axes.push_back(((axis.clamp(from, to) - from) / span));
  }
  return at::stack(axes, 1).to(at::kFloat);
}

std::vector<GridCell> GridCells(const at::Tensor& layout, int64_t grid, int64_t min_count) {
  if (grid < 1) throw UsageError("the atlas grid must be at least 1x1");
  const at::Tensor values = layout.to(at::kCPU, at::kFloat).contiguous();
  const auto v = values.accessor<float, 2>();
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> cells;  // (y, x) -> members
  for (int64_t i = 0; i < values.size(0); ++i) {
    const auto x = std::min<int64_t>(static_cast<int64_t>(std::floor(v[i][0] * grid)), grid - 1);
    const auto y = std::min<int64_t>(static_cast<int64_t>(std::floor(v[i][1] * grid)), grid - 1);
    cells[{std::max<int64_t>(y, 0), std::max<int64_t>(x, 0)}].push_back(i);
  }
  std::vector<GridCell> out;
  for (auto& [key, members] : cells) {
    if (static_cast<int64_t>(members.size()) < min_count) continue;
    out.push_back({key.second, key.first, std::move(members)});
  }
  return out;
}

}  // namespace cnnviz
