#include "cnnviz/optvis/transform.h"

#include <ATen/ATen.h>

#include <cmath>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace {

int64_t UniformInt(Rng& rng, int64_t low, int64_t high) {  // inclusive bounds
  return std::uniform_int_distribution<int64_t>(low, high)(rng);
}

}  // namespace

Transform Pad(int64_t pixels, double value) {
  return [pixels, value](const at::Tensor& images, Rng&) {
    return at::constant_pad_nd(images, {pixels, pixels, pixels, pixels}, value);
  };
}

Transform Jitter(int64_t pixels) {
  return [pixels](const at::Tensor& images, Rng& rng) {
    const int64_t height = images.size(2) - pixels, width = images.size(3) - pixels;
    const int64_t dy = UniformInt(rng, 0, pixels), dx = UniformInt(rng, 0, pixels);
    return images.slice(2, dy, dy + height).slice(3, dx, dx + width);
  };
}

Transform RandomScale(std::vector<double> scales) {
  return [scales](const at::Tensor& images, Rng& rng) {
    const double scale = scales[UniformInt(rng, 0, static_cast<int64_t>(scales.size()) - 1)];
    if (scale == 1.0) return images;
    const int64_t height = std::llround(images.size(2) * scale), width = std::llround(images.size(3) * scale);
    return at::upsample_bilinear2d(images, {height, width}, /*align_corners=*/false);
  };
}

Transform RandomRotate(std::vector<double> degrees) {
  return [degrees](const at::Tensor& images, Rng& rng) {
    const double angle = degrees[UniformInt(rng, 0, static_cast<int64_t>(degrees.size()) - 1)];
    if (angle == 0.0) return images;
    const double radians = angle * M_PI / 180.0;
    const double c = std::cos(radians), s = std::sin(radians);
    const at::Tensor theta = at::tensor({c, -s, 0.0, s, c, 0.0}, images.options()).view({1, 2, 3}).expand(
        {images.size(0), 2, 3});
    const at::Tensor grid = at::affine_grid_generator(theta, images.sizes(), /*align_corners=*/false);
    return at::grid_sampler(images, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/false);
  };
}

Transform Compose(std::vector<Transform> transforms) {
  return [transforms](const at::Tensor& images, Rng& rng) {
    at::Tensor out = images;
    for (const auto& transform : transforms) out = transform(out, rng);
    return out;
  };
}

Transform StandardTransforms() {
  std::vector<double> scales;
  for (int i = 0; i < 11; ++i) scales.push_back(1.0 + (i - 5) / 50.0);
  std::vector<double> degrees;
  for (int d = -10; d <= 10; ++d) degrees.push_back(d);
  for (int i = 0; i < 5; ++i) degrees.push_back(0.0);
  return Compose({Pad(12, 0.5), Jitter(8), RandomScale(scales), RandomRotate(degrees), Jitter(4)});
}

Transform TransformsByName(const std::string& name) {
  if (name == "standard") return StandardTransforms();
  if (name == "none") return [](const at::Tensor& images, Rng&) { return images; };
  throw UsageError("--transforms must be standard or none, not '" + name + "'");
}

}  // namespace cnnviz
