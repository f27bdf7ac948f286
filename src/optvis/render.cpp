#include "cnnviz/optvis/render.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adam.h>

#include <chrono>
#include <cmath>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace {

void GaussianBlur(at::Tensor& pixels, double sigma) {
  const int64_t radius = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(2.0 * sigma)));
  at::Tensor taps = at::arange(-radius, radius + 1, pixels.options()).pow(2).div(-2.0 * sigma * sigma).exp();
  taps = taps / taps.sum();
  const int64_t channels = pixels.size(1);
  const at::Tensor kernel = at::outer(taps, taps).expand({channels, 1, 2 * radius + 1, 2 * radius + 1}).contiguous();
  const at::Tensor padded = at::reflection_pad2d(pixels, {radius, radius, radius, radius});
  pixels.copy_(at::conv2d(padded, kernel, at::Tensor(), at::IntArrayRef{1, 1}, at::IntArrayRef{0, 0}, at::IntArrayRef{1, 1}, channels));
}

void ClipSmallNorms(at::Tensor& pixels, double percentile) {
  const at::Tensor norms = pixels.norm(2, 1, true);  // [N,1,H,W]
  const at::Tensor threshold =
      at::quantile(norms.flatten(1), percentile / 100.0, 1, true).view({-1, 1, 1, 1});
  pixels.mul_(norms >= threshold);
}

}  // namespace

void RenderOptions::Check() const {
  if (steps < 1) throw UsageError("--steps must be at least 1");
  if (!(learning_rate > 0)) throw UsageError("--lr must be positive");
  if (record_every < 1) throw UsageError("curve interval must be at least 1");
  if (decay < 0 || decay >= 1) throw UsageError("--decay must be in [0, 1)");
  if (blur_every < 0 || !(blur_sigma > 0)) throw UsageError("--blur-every must be >= 0 and --blur-sigma > 0");
  if (clip_percentile < 0 || clip_percentile >= 100) throw UsageError("--clip-percentile must be in [0, 100)");
}

RenderResult Render(ImageParam& param, const BatchObjective& objective, const Transform& transform, Rng& rng,
                    const RenderOptions& options, const StepCallback& on_step) {
  options.Check();
  const bool pixel_ops = options.decay > 0 || options.blur_every > 0 || options.clip_percentile > 0;
  at::Tensor pixels = param.PixelTensor();
  if (pixel_ops && !pixels.defined()) {
    throw UsageError("--decay, --blur-every and --clip-percentile need --param pixel");
  }
  torch::optim::Adam optimizer(param.Parameters(), torch::optim::AdamOptions(options.learning_rate));
  RenderResult result;
  {
    at::NoGradGuard no_grad;
    const at::Tensor initial = param.Image();
    result.initial_values = objective(initial, initial).detach().to(at::kCPU, at::kFloat);
  }
  int64_t n = 0;
  for (int64_t step = 1; step <= options.steps; ++step) {
    const auto started = std::chrono::steady_clock::now();
    optimizer.zero_grad();
    const at::Tensor image = param.Image();
    n = image.size(0);
    const at::Tensor values = objective(image, transform(image, rng));
    (-values.sum()).backward();
    optimizer.step();
    if (pixel_ops) {
      at::NoGradGuard no_grad;
      if (options.decay > 0) pixels.mul_(1.0 - options.decay);
      if (options.blur_every > 0 && step % options.blur_every == 0) GaussianBlur(pixels, options.blur_sigma);
      if (options.clip_percentile > 0) ClipSmallNorms(pixels, options.clip_percentile);
    }
    if (step % options.record_every == 0 || step == options.steps || step == 1) {
      const at::Tensor host = values.detach().to(at::kCPU, at::kFloat);
      if (result.curves.empty()) result.curves.resize(n);
      for (int64_t i = 0; i < n; ++i) result.curves[i].push_back(host[i].item<float>());
      result.curve_steps.push_back(step);
    }
    result.step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (on_step) on_step(step, options.steps);
  }
  at::NoGradGuard no_grad;
  result.images = param.Image().detach();
  result.final_values = objective(result.images, result.images).detach().to(at::kCPU, at::kFloat);
  return result;
}

}  // namespace cnnviz
