// Patches for figures: receptive-field crops and display normalization of projections.
#pragma once

#include <ATen/core/Tensor.h>

namespace cnnviz {

// The part of image [C,H,W] inside box [y0, x0, y1, x1) (which may extend past the border), as a
// [C, y1-y0, x1-x0] tensor with `fill` where the box leaves the image.
at::Tensor CropBox(const at::Tensor& image, const int64_t box[4], double fill);

// A signed projection [C,H,W] shown as an image: 0 -> grey, +-(99th percentile of the non-zero
// magnitudes) -> white/black, larger values clamped.
at::Tensor ProjectionToImage(const at::Tensor& projection);

// Bilinear resize of [C,H,W] to side x side.
at::Tensor ResizeSquare(const at::Tensor& image, int64_t side);

}  // namespace cnnviz
