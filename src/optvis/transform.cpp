#include "cnnviz/optvis/transform.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <cmath>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace {

int64_t UniformInt(Rng& rng, int64_t low, int64_t high) {  // inclusive bounds
  return std::uniform_int_distribution<int64_t>(low, high)(rng);
}

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Bilinear sampling of float CPU images [N, C, H, W] at `grid` [N, Ho, Wo, 2] (zeros outside,
// align_corners=false): ATen's grid_sampler forward, and a backward of its own that computes the images'
// gradient only. ATen's backward also computes the grid's, which nothing here needs, at twice the cost of
// the forward (4 x 3 x 144 x 144, one thread: 1.63 ms against 0.80 ms).
class SampleImages : public torch::autograd::Function<SampleImages> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& images, const at::Tensor& grid) {
    ctx->save_for_backward({grid});
    ctx->saved_data["height"] = images.size(2);
    ctx->saved_data["width"] = images.size(3);
    return at::grid_sampler(images, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/false);
  }

  // The adjoint of the forward: each output pixel's gradient goes to its four source pixels with the
  // forward's weights, computed as ATen's CPU kernel computes them.
  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const at::Tensor grid = ctx->get_saved_variables()[0].contiguous();
    const at::Tensor grad = grad_outputs[0].to(at::kFloat).contiguous();  // [N, C, Ho, Wo]
    const int64_t height = ctx->saved_data["height"].toInt(), width = ctx->saved_data["width"].toInt();
    const int64_t count = grad.size(0), channels = grad.size(1), outputs = grad.size(2) * grad.size(3);
    at::Tensor grad_images = at::zeros({count, channels, height, width}, grad.options());
    const float* g = grad.data_ptr<float>();
    const float* xy = grid.data_ptr<float>();
    float* out = grad_images.data_ptr<float>();
    const float half_width = static_cast<float>(width) / 2, half_height = static_cast<float>(height) / 2;
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        for (int64_t p = 0; p < outputs; ++p) {
          const float x = (xy[(n * outputs + p) * 2] + 1) * half_width - 0.5f;
          const float y = (xy[(n * outputs + p) * 2 + 1] + 1) * half_height - 0.5f;
          const float west = std::floor(x), north = std::floor(y);
          const float to_east = x - west, to_west = 1 - to_east, to_south = y - north, to_north = 1 - to_south;
          const int64_t column = static_cast<int64_t>(west), row = static_cast<int64_t>(north);
          const int64_t rows[4] = {row, row, row + 1, row + 1};
          const int64_t columns[4] = {column, column + 1, column, column + 1};
          const float weights[4] = {to_north * to_west, to_north * to_east, to_south * to_west, to_south * to_east};
          for (int corner = 0; corner < 4; ++corner) {
            if (rows[corner] < 0 || rows[corner] >= height || columns[corner] < 0 || columns[corner] >= width) continue;
            const int64_t at = rows[corner] * width + columns[corner];
            for (int64_t c = 0; c < channels; ++c) {
              out[(n * channels + c) * height * width + at] += weights[corner] * g[(n * channels + c) * outputs + p];
            }
          }
        }
      }
    });
    return {grad_images, at::Tensor()};
  }
};

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
    if (images.is_cpu() && images.scalar_type() == at::kFloat && images.requires_grad()) {
      return SampleImages::apply(images, grid);
    }
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
