// The shared dataset pass (docs/architecture.md, "One data pass, many consumers"): images are decoded
// once, run once through one inference view over the union of the requested layers, and each batch's
// maps go to every consumer, which keeps its own bounded state. Dissection's first pass feeds consumers
// (NetworkDissection::Run), and ScanImages is the same pass over a plain image folder; the atlas reads
// top images, per-image peaks and activation samples from one pass this way.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cnnviz/core/precision.h"
#include "cnnviz/data/image_source.h"
#include "cnnviz/methods/deconvnet.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {

// One layer of a scan: canonical name, channels and map size.
struct ScanLayer {
  std::string name;
  int64_t units = 0, height = 0, width = 0;
};

// One batch as consumers see it, on the CPU. Per layer l: maps[l] [B, h*w, K] float, positions-major
// (a position's K channels side by side), maxima[l] [B, K] each channel's maximum over positions and
// argmax[l] [B, K] the first flat position holding it. images: the dataset indices of the B rows.
struct ScanBatch {
  std::vector<at::Tensor> maps, maxima, argmax;
  std::vector<int64_t> images;
};

// A reader of the pass. Calls come from one thread, batches in dataset order; a consumer never sees an
// image that failed to decode.
class ScanConsumer {
 public:
  virtual ~ScanConsumer() = default;
  // Before the first batch: the layers (in the order of ScanBatch's vectors) and the dataset's size.
  virtual void Begin(const std::vector<ScanLayer>& layers, size_t images) = 0;
  virtual void Consume(const ScanBatch& batch) = 0;
};

// Per layer and unit, its k strongest images: each image's maximum over positions and where it is (ties
// to the earlier image), as DeconvNet::Scan keeps them, so the lists feed DeconvNet::Project directly.
class TopActivations : public ScanConsumer {
 public:
  explicit TopActivations(int64_t k);
  ~TopActivations() override;
  void Begin(const std::vector<ScanLayer>& layers, size_t images) override;
  void Consume(const ScanBatch& batch) override;
  // Layer `layer`'s units, each with its list strongest first.
  std::vector<UnitTop> Units(size_t layer) const;

 private:
  struct State;
  int64_t k_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<State>> layers_;
};

// Per layer, every image's peak (maximum over positions) of every unit: [images, K] float, NaN for
// images not scanned. What histograms of a unit's response over the dataset are made of. 4 bytes per
// image and unit (1,000 images of a 2,048-unit layer: 8 MiB).
class PeakActivations : public ScanConsumer {
 public:
  void Begin(const std::vector<ScanLayer>& layers, size_t images) override;
  void Consume(const ScanBatch& batch) override;
  const at::Tensor& Peaks(size_t layer) const { return peaks_[layer]; }

 private:
  std::vector<at::Tensor> peaks_;
};

// Activation vectors for an activation atlas (Carter et al., 2019): per image, `per_image` positions
// drawn uniformly at random, as fractions of the map, so every layer is sampled at the same place in the
// image; each layer's K-vector there. The positions of image i come from a generator seeded by (seed, i):
// the same whatever the batch size or the images that fail. Keeps at most `limit` samples (the first
// ones, in dataset order).
class ActivationSamples : public ScanConsumer {
 public:
  ActivationSamples(int64_t limit, int64_t per_image, uint64_t seed);
  void Begin(const std::vector<ScanLayer>& layers, size_t images) override;
  void Consume(const ScanBatch& batch) override;
  // [n, K] for layer `layer`; row r came from image SampleImages()[r].
  at::Tensor Vectors(size_t layer) const;
  const std::vector<int64_t>& SampleImages() const { return images_; }
  // [n, 2] the (row, column) fractions in [0, 1) of every sample.
  at::Tensor Places() const;

 private:
  int64_t limit_, per_image_;
  uint64_t seed_;
  std::vector<ScanLayer> layers_;
  std::vector<std::vector<at::Tensor>> rows_;  // per layer, per batch [b, K]
  std::vector<int64_t> images_;
  std::vector<float> places_;
};

struct ScanOptions {
  std::vector<std::string> layers;  // module paths or aliases, each with spatial maps [N, K, h, w]
  int64_t batch = 16;               // images per forward pass
  int64_t decode_threads = 0;       // 0 = auto (1 on a CPU, up to 8 on a GPU)
  // The forward pass at this precision (autocast; core/precision.h); consumers get float32 maps.
  Precision precision = Precision::kFp32;
  void Check() const;
};

struct ScanSummary {
  size_t images = 0;                                     // images decoded and scanned
  std::vector<std::pair<size_t, std::string>> skipped;   // undecodable images: index, reason
  double seconds = 0;
};

// The shared pass over a plain image source (no labels): every image through one inference view of the
// layers, each batch to every consumer. `progress(done, total)` after every batch. Throws InputError when
// no image decodes.
ScanSummary ScanImages(const Probe& probe, const ImageSource& source, const ScanOptions& options,
                       const std::vector<ScanConsumer*>& consumers,
                       const std::function<void(size_t, size_t)>& progress = nullptr);

// The layers as a scan sees them (checked: each must have spatial maps), in the given order.
std::vector<ScanLayer> ScanLayers(const Probe& probe, const std::vector<std::string>& layers);

namespace detail {
// Splits positions-major maps [B, h, w, K] of every layer into the ScanBatch consumers read.
ScanBatch MakeScanBatch(const std::vector<at::Tensor>& positions_major, std::vector<int64_t> images);
}  // namespace detail

}  // namespace cnnviz
