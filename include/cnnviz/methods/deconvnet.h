// DeconvNet: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
// For every unit of a layer, the dataset images that excite it most (one streaming pass, memory
// O(units x k) whatever the dataset size), and the projection of that excitation back to pixels:
// backward from the unit's activation through max-pool switches and transposed filters, with
// relu(grad_out) at every ReLU (the DeconvNet rule), or guided backpropagation, or the plain gradient.
// In autograd terms the Probe's rule views do exactly this (see cnnviz/model/probe.h).
// Limit: a unit is one channel at one position, so layers without spatial extent are refused.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "cnnviz/data/image_source.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {

struct DeconvOptions {
  // Layers scanned in the same pass over the data (module paths or aliases). Required.
  std::vector<std::string> layers;
  // Units (channels) of every layer to keep; empty = all.
  std::vector<int64_t> units;
  // Images kept per unit. Default 9 (Zeiler & Fergus's 3x3).
  int64_t top = 9;
  // Backward rule of the projection. Default DeconvNet.
  BackwardRule rule = BackwardRule::kDeconvNet;
  // "max": seed the backward pass with the unit's activation at its maximum position only (default);
  // "map": with the unit's whole feature map.
  std::string seed_from = "max";
  // Images per forward batch in the scan, and (unit, image) pairs per backward batch. Default 16.
  int64_t batch = 16;
  // Scan at most this many images (0 = all). Default 0.
  size_t max_images = 0;
  // Threads decoding images ahead of the scan (one batch each); 0 = 1 on a CPU, up to 8 on a GPU.
  int64_t decode_threads = 0;
  // Throws UsageError for bad values.
  void Check() const;
};

// One of a unit's strongest images.
struct TopActivation {
  size_t image = 0;       // index in the ImageSource
  float activation = 0;   // the unit's maximum over positions in this image
  int64_t y = 0, x = 0;   // where, in the layer's feature map
};

struct UnitTop {
  std::string layer;  // canonical module path
  int64_t unit = 0;
  std::vector<TopActivation> top;  // strongest first
};

struct ScanStats {
  size_t images = 0;                                     // images decoded and scanned
  std::vector<std::pair<size_t, std::string>> skipped;   // undecodable images: index, reason
  double seconds = 0;
};

class DeconvNet {
 public:
  explicit DeconvNet(const Probe& probe) : probe_(probe) {}
  using Progress = std::function<void(size_t done, size_t total)>;

  // One pass over `source` at the model's input size: the top-k images of every requested unit of every
  // layer, in options.layers order then unit order.
  std::vector<UnitTop> Scan(const ImageSource& source, const DeconvOptions& options, ScanStats* stats,
                            const Progress& progress = nullptr) const;

  // Backward projections of the given (unit, image) activations: [top][3,H,W] per unit, the raw
  // gradient with respect to the model input (before any normalization for display).
  std::vector<std::vector<at::Tensor>> Project(const ImageSource& source, const std::vector<UnitTop>& units,
                                               const DeconvOptions& options) const;

  // For one image [3,H,W] at the model's input size: the `count` units of `layer` with the largest
  // maximum activation, strongest first (each with one TopActivation, image index 0).
  std::vector<UnitTop> StrongestUnits(const at::Tensor& image, const std::string& layer, int64_t count) const;

 private:
  const Probe& probe_;
};

}  // namespace cnnviz
