#include "cnnviz/io/crop.h"

#include <ATen/ATen.h>

namespace cnnviz {

at::Tensor CropBox(const at::Tensor& image, const int64_t box[4], double fill) {
  const int64_t height = image.size(1), width = image.size(2);
  at::Tensor out = at::full({image.size(0), box[2] - box[0], box[3] - box[1]}, fill, image.options());
  const int64_t y0 = std::max<int64_t>(box[0], 0), x0 = std::max<int64_t>(box[1], 0);
  const int64_t y1 = std::min(box[2], height), x1 = std::min(box[3], width);
  if (y1 > y0 && x1 > x0) {
    out.slice(1, y0 - box[0], y1 - box[0])
        .slice(2, x0 - box[1], x1 - box[1])
        .copy_(image.slice(1, y0, y1).slice(2, x0, x1));
  }
  return out;
}

at::Tensor ProjectionToImage(const at::Tensor& projection) {
  // Projections are sparse with a few large spikes: scale by the 99th percentile of the non-zero
  // magnitudes so the structure shows, clamping the spikes.
  const at::Tensor magnitudes = projection.abs().flatten();
  const at::Tensor nonzero = magnitudes.masked_select(magnitudes > 0);
  if (nonzero.numel() == 0) return at::full_like(projection, 0.5);
  const double scale = at::quantile(nonzero.to(at::kFloat), 0.99).item<double>();
  if (scale <= 0) return at::full_like(projection, 0.5);
  return (projection / (2.0 * scale) + 0.5).clamp(0, 1);
}

at::Tensor ResizeSquare(const at::Tensor& image, int64_t side) {
  if (image.size(1) == side && image.size(2) == side) return image;
  return at::upsample_bilinear2d(image.unsqueeze(0), {side, side}, false).squeeze(0);
}

}  // namespace cnnviz
