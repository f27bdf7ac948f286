// Image parameterizations (Olah et al., "Feature Visualization", Distill 2017; Lucid's optvis/param):
// (options, batch, seed) => learnable tensors => images [N,3,H,W] in [0,1].
//
// - "pixel": one free value per pixel and channel.
// - "fft":   a Fourier spectrum scaled by 1/f (Lucid's fft_image, decay power 1): gradient steps change
//            low frequencies as readily as high ones, which removes most high-frequency noise.
// Either is followed by Lucid's to_valid_rgb: optionally a fixed decorrelating colour matrix (ImageNet's
// colour covariance square root), then a sigmoid into [0,1].
// Every batch element is initialized from its own generator seeded with (seed, element_seed), so an
// element starts the same whether it is optimized alone or in a batch.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

namespace cnnviz {

struct ImageParamOptions {
  // "pixel" or "fft". Default "fft".
  std::string kind = "fft";
  // Apply Lucid's colour decorrelation before the sigmoid. Default true.
  bool decorrelate = true;
  // Image height and width in pixels. Default 128.
  int64_t height = 128;
  int64_t width = 128;
  // Standard deviation of the random initialization (Lucid: 0.01).
  double init_std = 0.01;
  // Throws UsageError for an unknown kind or a non-positive size.
  void Check() const;
};

class ImageParam {
 public:
  virtual ~ImageParam() = default;
  // The current images [N,3,H,W] in [0,1], differentiable with respect to Parameters().
  virtual at::Tensor Image() const = 0;
  // The learnable tensors.
  virtual std::vector<at::Tensor> Parameters() const = 0;
  // The raw per-pixel tensor [N,3,H,W] for pixel-space regularizers (blur, decay, clipping), or an
  // undefined tensor for parameterizations that have none (fft).
  virtual at::Tensor PixelTensor() const = 0;

  // One image per entry of `element_seeds`, initialized from (seed, element_seed).
  static std::unique_ptr<ImageParam> Create(const ImageParamOptions& options, uint64_t seed,
                                            const std::vector<uint64_t>& element_seeds, const c10::Device& device);
};

}  // namespace cnnviz
