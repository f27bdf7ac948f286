// DeconvNet: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
// For every unit of a layer, the dataset images that excite it most (one streaming pass, memory
// O(units x k) whatever the dataset size), and the projection of that excitation back to pixels:
// backward from the unit's activation through max-pool switches and transposed filters, with
// relu(grad_out) at every ReLU (the DeconvNet rule), or guided backpropagation, or the plain gradient.
// In autograd terms the Probe's rule views do exactly this (see cnnviz/model/probe.h).
// A layer without spatial extent ([N, C], e.g. the class logits) is a class target: its unit is one
// logit, and the three rules give saliency (Simonyan et al. 2014), guided backpropagation and DeconvNet
// of that class, as Captum's Saliency(abs=False), GuidedBackprop and Deconvolution with target=K do.
//
// What is back-propagated (DeconvOptions::seed_from):
//   max       the activation at its maximum position, every other zeroed: d(a * a_detached)/dx, i.e. the
//             projection scaled by the activation (Zeiler & Fergus's projection of one activation);
//   map       the whole map, each position scaled by its activation (Zeiler & Fergus's projection of a
//             feature map);
//   sum       ones over the map: d(sum of the map)/dx (Captum's neuron selector given as a sum);
//   position  one at one position (its maximum, or DeconvOptions::position): d a[y, x]/dx (Captum's
//             neuron selector given as an index (c, y, x); for a class target, Captum's target=K);
//   auto      max for spatial layers, position (seed 1) for class targets.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "cnnviz/core/precision.h"
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
  // What is back-propagated: "auto" (default), "max", "map", "sum" or "position" (see above).
  std::string seed_from = "auto";
  // With seed_from "position": the (row, column) in the layer's map to seed; empty = each top image's
  // maximum position.
  std::vector<int64_t> position;
  // Images per forward batch in the scan, and (unit, image) pairs per backward batch. Default 16.
  int64_t batch = 16;
  // Scan at most this many images (0 = all). Default 0.
  size_t max_images = 0;
  // Threads decoding images ahead of the scan (one batch each); 0 = 1 on a CPU, up to 8 on a GPU.
  int64_t decode_threads = 0;
  // The scan's forward pass at this precision (autocast; core/precision.h); the maps are float32 from
  // there on, and projections always run in float32. Default fp32 (exact).
  Precision scan_precision = Precision::kFp32;
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

  // Projections of units on one model input [1,3,H,W] (already preprocessed, e.g. from ImageUnits'
  // caller): [unit][3,H,W] the raw gradient with respect to that input. Every TopActivation refers to it.
  std::vector<at::Tensor> ProjectInput(const at::Tensor& input, const std::vector<UnitTop>& units,
                                       const DeconvOptions& options) const;

  // For one model input [1,3,H,W] (already preprocessed): the given `units` of `layer` (in that order) or,
  // when empty, the `count` units with the largest maximum activation, strongest first; each with one
  // TopActivation (image index 0) at its maximum.
  std::vector<UnitTop> ImageUnits(const at::Tensor& input, const std::string& layer, const std::vector<int64_t>& units,
                                  int64_t count) const;

 private:
  // Backward projections of a batch: `inputs` [B,3,H,W] preprocessed, entry b projecting unit `units[b]`
  // at `tops[b]`. Returns [B,3,H,W] on the CPU.
  at::Tensor ProjectBatch(const at::Tensor& inputs, const std::vector<const UnitTop*>& units,
                          const std::vector<const TopActivation*>& tops, const DeconvOptions& options) const;

  const Probe& probe_;
};

}  // namespace cnnviz
