// The optimization loop shared by activation maximization and inversion (Lucid's optvis/render.py):
// (parameterization, objective, transforms) => Adam ascent for `steps` => images and objective curves.
// Optional pixel-space regularizers of Yosinski et al. ("Understanding Neural Networks Through Deep
// Visualization", 2015) run between steps on parameterizations that have pixels.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "cnnviz/optvis/param.h"
#include "cnnviz/optvis/transform.h"

namespace cnnviz {

struct RenderOptions {
  // Optimization steps. Default 512.
  int64_t steps = 512;
  // Adam learning rate. Default 0.05 (Lucid's).
  double learning_rate = 0.05;
  // Record the objective every this many steps (and at the last step). Default 16.
  int64_t record_every = 16;
  // Yosinski's L2 decay: pixels *= (1 - decay) after every step. Default 0 (off). Pixel param only.
  double decay = 0.0;
  // Yosinski's Gaussian blur of the pixels every N steps (0 = off) with this sigma. Pixel param only.
  int64_t blur_every = 0;
  double blur_sigma = 0.5;
  // Yosinski's pixel-norm clipping: zero pixels whose norm is below this percentile (0 = off).
  double clip_percentile = 0.0;
  // Throws UsageError for out-of-range values.
  void Check() const;
};

// Per-element objective values [N] of images [N,3,H,W] in [0,1]: `image` untransformed (for
// regularizers), `transformed` what the network sees.
using BatchObjective = std::function<at::Tensor(const at::Tensor& image, const at::Tensor& transformed)>;
// Called after each step with (step, steps).
using StepCallback = std::function<void(int64_t, int64_t)>;

struct RenderResult {
  at::Tensor images;                       // [N,3,H,W] in [0,1], detached
  at::Tensor initial_values;               // [N], objective of the initial images without transforms
  at::Tensor final_values;                 // [N], objective of the final images without transforms
  std::vector<int64_t> curve_steps;        // steps at which the curve was recorded
  std::vector<std::vector<float>> curves;  // [N][records], objective under transforms at those steps
  std::vector<double> step_seconds;        // wall time of every step
};

// Maximizes the sum over the batch of `objective`. Deterministic for a given rng state.
RenderResult Render(ImageParam& param, const BatchObjective& objective, const Transform& transform, Rng& rng,
                    const RenderOptions& options, const StepCallback& on_step = nullptr);

}  // namespace cnnviz
