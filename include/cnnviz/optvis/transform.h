// Transformation robustness (Lucid's optvis/transform.py): (config) => (images, rng) => (randomly
// transformed images). One random draw per step is shared by the whole batch, so a batch element sees
// the same transformations whether it is optimized alone or with others.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

namespace cnnviz {

using Rng = std::mt19937_64;
using Transform = std::function<at::Tensor(const at::Tensor& images, Rng& rng)>;

// Pads every side by `pixels` with a constant value (Lucid: 0.5).
Transform Pad(int64_t pixels, double value = 0.5);
// Random crop that removes up to `pixels` rows and columns (Lucid's jitter(d)).
Transform Jitter(int64_t pixels);
// Bilinear resize by a factor drawn uniformly from `scales`.
Transform RandomScale(std::vector<double> scales);
// Bilinear rotation by an angle in degrees drawn uniformly from `degrees`; outside is filled with 0.
Transform RandomRotate(std::vector<double> degrees);
// Applies `transforms` in order.
Transform Compose(std::vector<Transform> transforms);

// Lucid's standard_transforms: pad(12), jitter(8), random_scale(0.9..1.1 in 0.02 steps),
// random_rotate(-10..10 degrees, 0 five times more likely), jitter(4).
Transform StandardTransforms();

// "standard" or "none". Throws UsageError for anything else.
Transform TransformsByName(const std::string& name);

}  // namespace cnnviz
