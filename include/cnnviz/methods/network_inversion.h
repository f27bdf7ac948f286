// Network inversion by regularized optimization (Mahendran & Vedaldi, "Understanding Deep Image
// Representations by Inverting Them", CVPR 2015): what does a layer keep of an image?
//
//   x* = argmin_x  ||Φ(x) − Φ0||² / ||Φ0||²  +  (λ_α/2 · Σ|x|^α  +  λ_TV/2 · Σ (∂x² + ∂y²)^(β/2)) / σ²
//
// with the settings of the paper's code (deep-goggle, experiment_cnn.m) in paper mode (--paper): x is the image in
// 0–255 units minus the model's mean colour, α = 6, λ_α = 8e-10, β = 2, λ_TV = 1, 10 or 100 by depth
// (the first quarter of the network's conv/linear layers, up to half, beyond: AlexNet's conv1–2, conv3–4,
// conv5–fc8), σ = B·sqrt(H·W) with B = 80 the average pixel norm of natural images; momentum SGD (0.9)
// for 400 steps with the learning rate 0.004 divided by 10 after a quarter and by 100 after three
// quarters of the steps (momentum reset at each change), each step x += v, v = 0.9 v − lr σ² ∇E;
// random start of norm σ.
//
// Default mode keeps the energy but scales both priors by 0.01 (prior_scale) and minimizes it by L-BFGS,
// coarse to fine (the image optimized at 1/4, 1/2, then the full input size, 400 iterations in all),
// from a seeded start of norm σ/100. Measured on 20 concept images with the bundled model (README.md):
// with the paper's weights every optimizer tried (momentum SGD, Adam, L-BFGS) stops at the same
// energy, about 20 dB at conv1 on those images; the weights, not the optimizer, limit shallow layers.
//
// Several layers are inverted together as one batch (one element per layer, each with its own target):
// layers are grouped by depth so that each group's view is cut after its deepest layer (default mode
// then optimizes the group's elements one after the other, each through a view cut at its own layer).
// An element's result does not depend on its group: its start is seeded by (seed, layer index) and the
// terms are per element.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/precision.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {

struct InversionOptions {
  // Layers (module paths or aliases) to invert from, one reconstruction each. Required.
  std::vector<std::string> layers;
  // The paper's algorithm exactly (momentum SGD, its schedule and prior weights; below). Default false:
  // the same energy with the priors scaled by `prior_scale`, minimized by L-BFGS coarse to fine.
  bool paper_mode = false;
  // Default mode: the α-norm and TV weights are multiplied by this. Default 0.01. The paper's weights
  // (calibrated for AlexNet on 224-pixel photos) outweigh the data term at shallow layers: on the concept
  // images the true image's energy at conv1 of the bundled model is 0.26-0.69, the paper's optimum's 0.24.
  double prior_scale = 0.01;
  // Default mode: coarse-to-fine levels (1 = optimize at full size only). Level l's variable is the image
  // at 1/2^(levels-1-l) of the input size, bilinearly resized; the finest level gets 40% of the steps.
  // Default 3.
  int64_t levels = 3;
  // Iterations (L-BFGS iterations over all levels in default mode). Default 400 (the paper's 100 + 200 +
  // 100).
  int64_t steps = 400;
  // Paper mode only, as are learning_rate, auto_learning_rate and momentum. Initial learning rate; divided by 10 after steps/4 and by 100 after 3·steps/4. With
  // auto_learning_rate (default) it is 2/L instead, L the largest eigenvalue of the Hessian of σ²·E at the
  // start (power iteration): the paper's 0.004 was tuned for AlexNet and diverges or crawls elsewhere.
  double learning_rate = 0.004;
  bool auto_learning_rate = true;
  // Estimate L from finite differences of gradients even where double backward works. That estimate is
  // what networks without a double backward (hardsigmoid) get anyway; this switch lets one compare the
  // two. Default false.
  bool finite_difference_curvature = false;
  double momentum = 0.9;
  // α-norm exponent and weight. Defaults 6 and 8e-10.
  double alpha = 6.0;
  double lambda_alpha = 8e-10;
  // TV exponent and weight; unset = 1, 10 or 100 by depth (see above).
  double beta = 2.0;
  std::optional<double> lambda_tv;
  // B: average Euclidean norm of a natural image's pixels in 0–255 units. Default 80.
  double pixel_norm = 80.0;
  // Layers inverted together. Default 8.
  int64_t batch = 8;
  // Stop an element once its relative feature error ||Φ(x)−Φ0||/||Φ0|| is at or below this (0 = never);
  // a batch stops when all its elements have. Default 0.
  double target_error = 0.0;
  // Record the curves every this many steps (and at the first and last). Default 10.
  int64_t record_every = 10;
  // Cut the network after each group's deepest layer. Default true (false: benchmarks).
  bool truncate = true;
  uint64_t seed = 0;
  // The network's pass in the iterations' gradient evaluations, at this precision (autocast;
  // core/precision.h). The image variable, the optimizer's state, the energy and its priors stay float32,
  // and so do the targets Φ0, the curvature estimate and the final evaluation (feature errors, PSNR), so
  // results compare across precisions. bf16's relative error (~4e-3 per activation) bounds how low the
  // feature error can be driven.
  Precision precision = Precision::kFp32;
  // Throws UsageError for out-of-range values.
  void Check() const;
};

struct LayerInversion {
  std::string layer;         // as requested (alias or path)
  double lambda_tv = 0;      // the weight used
  double learning_rate = 0;  // the initial learning rate used
  double curvature = 0;      // L estimated at the start (0 when the rate was given)
  // How L was estimated: "double backward" (exact Hessian-vector products), "finite differences" (when
  // an op of the network has no double backward, e.g. hardsigmoid: the data term's Gauss-Newton product
  // with Jacobian-vector products by finite differences of the features, plus the priors' exact
  // product), "" when the rate was given.
  std::string curvature_method;
  at::Tensor image;          // [3,H,W] in [0,1] (clamped for display), CPU
  at::Tensor raw;            // [3,H,W] unclamped, in the same units as `image`, CPU
  double feature_error = 0;  // ||Φ(x*) − Φ0|| / ||Φ0||
  double pixel_rmse = 0;     // against the original, [0,1] units, after clamping
  double psnr = 0;           // 10 log10(1 / MSE), dB
  int64_t iterations = 0;    // steps taken (fewer than `steps` when target_error was reached)
  double seconds = 0;        // wall time of its group, divided by the group's size
  std::vector<float> objective_curve;  // E at the recorded steps
  std::vector<float> error_curve;      // relative feature error at the recorded steps
  std::vector<int64_t> curve_steps;  // paper mode: from step 1 (before its update); default mode: 0 = the start
};

struct InversionResult {
  at::Tensor original;  // [3,H,W] in [0,1], at the model's input size, CPU
  std::vector<LayerInversion> layers;  // in the order of InversionOptions::layers
  double seconds = 0;
};

// The λ_TV default for `layer` (1, 10 or 100 by relative depth among conv/linear layers).
double DefaultTvWeight(const Probe& probe, const std::string& layer);

// Σ|x|^α per batch element: [N,...] -> [N].
at::Tensor AlphaNorm(const at::Tensor& x, double alpha);
// Σ ((x[i,j+1]−x[i,j])² + (x[i+1,j]−x[i,j])²)^(β/2) per element, over channels and pixels, with the
// paper's replicated border (differences past the last row/column are 0): [N,C,H,W] -> [N].
at::Tensor TotalVariation(const at::Tensor& x, double beta);

class NetworkInversion {
 public:
  explicit NetworkInversion(const Probe& probe) : probe_(probe) {}
  // (group index, groups, step, steps)
  using Progress = std::function<void(int64_t, int64_t, int64_t, int64_t)>;
  // Inverts `image` ([3,H,W] in [0,1], any size: resized to the model's input size).
  InversionResult Run(const at::Tensor& image, const InversionOptions& options,
                      const Progress& progress = nullptr) const;

 private:
  const Probe& probe_;
};

}  // namespace cnnviz
