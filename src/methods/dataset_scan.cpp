#include "cnnviz/methods/dataset_scan.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <random>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/model/model.h"
#include "src/methods/top_k.h"

namespace cnnviz {

struct TopActivations::State {
  detail::LayerTopK top;
};

TopActivations::TopActivations(int64_t k) : k_(k) {
  if (k < 1) throw UsageError("top images per unit must be at least 1");
}
TopActivations::~TopActivations() = default;

void TopActivations::Begin(const std::vector<ScanLayer>& layers, size_t /*images*/) {
  names_.clear();
  layers_.clear();
  for (const ScanLayer& layer : layers) {
    std::vector<int64_t> all(static_cast<size_t>(layer.units));
    for (int64_t u = 0; u < layer.units; ++u) all[static_cast<size_t>(u)] = u;
    names_.push_back(layer.name);
    layers_.push_back(std::make_unique<State>(State{detail::LayerTopK(all, layer.width)}));
  }
}

void TopActivations::Consume(const ScanBatch& batch) {
  const at::Tensor indices = at::tensor(batch.images, at::kLong);
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l]->top.Update(batch.maps[l].transpose(1, 2), indices, k_, batch.maxima[l], batch.argmax[l]);
  }
}

std::vector<UnitTop> TopActivations::Units(size_t layer) const {
  const detail::LayerTopK& top = layers_.at(layer)->top;
  std::vector<UnitTop> units;
  const at::Tensor values = top.values.contiguous(), images = top.images.contiguous(),
                   positions = top.positions.contiguous();
  const auto v = values.accessor<float, 2>();
  const auto im = images.accessor<int64_t, 2>();
  const auto p = positions.accessor<int64_t, 2>();
  for (int64_t u = 0; u < top.units.size(0); ++u) {
    UnitTop unit;
    unit.layer = names_[layer];
    unit.unit = u;
    for (int64_t j = 0; j < values.size(1); ++j) {
      if (!std::isfinite(v[u][j]) && v[u][j] < 0) continue;  // fewer images than k
      unit.top.push_back({static_cast<size_t>(im[u][j]), v[u][j], p[u][j] / top.width, p[u][j] % top.width});
    }
    units.push_back(std::move(unit));
  }
  return units;
}

void PeakActivations::Begin(const std::vector<ScanLayer>& layers, size_t images) {
  peaks_.clear();
  for (const ScanLayer& layer : layers) {
    peaks_.push_back(at::full({static_cast<int64_t>(images), layer.units}, NAN, at::kFloat));
  }
}

void PeakActivations::Consume(const ScanBatch& batch) {
  const at::Tensor rows = at::tensor(batch.images, at::kLong);
  for (size_t l = 0; l < peaks_.size(); ++l) peaks_[l].index_copy_(0, rows, batch.maxima[l]);
}

ActivationSamples::ActivationSamples(int64_t limit, int64_t per_image, uint64_t seed)
    : limit_(limit), per_image_(per_image), seed_(seed) {
  if (limit < 1) throw UsageError("--samples must be at least 1");
  if (per_image < 1) throw UsageError("samples per image must be at least 1");
}

void ActivationSamples::Begin(const std::vector<ScanLayer>& layers, size_t /*images*/) {
  layers_ = layers;
  rows_.assign(layers.size(), {});
  images_.clear();
  places_.clear();
}

void ActivationSamples::Consume(const ScanBatch& batch) {
  std::vector<int64_t> image_rows;  // batch row of every new sample
  std::vector<float> places;
  for (size_t b = 0; b < batch.images.size() && static_cast<int64_t>(images_.size()) < limit_; ++b) {
    // std::mt19937_64 and the raw bits: the same numbers with every standard library.
    std::mt19937_64 generator(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(batch.images[b]) + 1);
    for (int64_t s = 0; s < per_image_ && static_cast<int64_t>(images_.size()) < limit_; ++s) {
      const float row = static_cast<float>(generator() >> 40) / static_cast<float>(1 << 24);
      const float column = static_cast<float>(generator() >> 40) / static_cast<float>(1 << 24);
      images_.push_back(batch.images[b]);
      image_rows.push_back(static_cast<int64_t>(b));
      places.push_back(row);
      places.push_back(column);
    }
  }
  if (image_rows.empty()) return;
  places_.insert(places_.end(), places.begin(), places.end());
  const at::Tensor rows = at::tensor(image_rows, at::kLong);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const ScanLayer& layer = layers_[l];
    std::vector<int64_t> flat;
    for (size_t s = 0; s < image_rows.size(); ++s) {
      const auto y = std::min<int64_t>(static_cast<int64_t>(places[2 * s] * layer.height), layer.height - 1);
      const auto x = std::min<int64_t>(static_cast<int64_t>(places[2 * s + 1] * layer.width), layer.width - 1);
      flat.push_back(y * layer.width + x);
    }
    // maps [B, P, K]: the K-vector of (row, position) for every sample.
    const at::Tensor& maps = batch.maps[l];
    rows_[l].push_back(maps.index({rows, at::tensor(flat, at::kLong)}).clone());
  }
}

at::Tensor ActivationSamples::Vectors(size_t layer) const {
  if (rows_.at(layer).empty()) return at::zeros({0, layers_.at(layer).units}, at::kFloat);
  return at::cat(rows_[layer]);
}

at::Tensor ActivationSamples::Places() const {
  return at::tensor(places_, at::kFloat).view({-1, 2});
}

void ScanOptions::Check() const {
  if (layers.empty()) throw UsageError("--layers is required");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (decode_threads < 0) throw UsageError("--workers must be >= 0");
}

std::vector<ScanLayer> ScanLayers(const Probe& probe, const std::vector<std::string>& layers) {
  std::vector<ScanLayer> out;
  for (const auto& name : layers) {
    const LayerInfo& info = probe.FindUnits(name);
    if (info.shape.size() != 4) {
      throw UsageError("layer '" + name + "' has no spatial extent: the dataset pass needs feature maps [N,K,h,w]");
    }
    out.push_back({info.name, info.units, info.shape[2], info.shape[3]});
  }
  return out;
}

namespace detail {
ScanBatch MakeScanBatch(const std::vector<at::Tensor>& positions_major, std::vector<int64_t> images) {
  ScanBatch batch;
  batch.images = std::move(images);
  for (const at::Tensor& maps : positions_major) {
    const at::Tensor flat = maps.view({maps.size(0), maps.size(1) * maps.size(2), maps.size(3)});
    auto [maxima, argmax] = ChannelMaxima(flat);
    batch.maps.push_back(flat);
    batch.maxima.push_back(maxima);
    batch.argmax.push_back(argmax);
  }
  return batch;
}
}  // namespace detail

ScanSummary ScanImages(const Probe& probe, const ImageSource& source, const ScanOptions& options,
                       const std::vector<ScanConsumer*>& consumers, const std::function<void(size_t, size_t)>& progress) {
  options.Check();
  const auto start = std::chrono::steady_clock::now();
  const Model& model = probe.model();
  CheckPrecision(options.precision, model.device());
  const InputSpec& spec = model.input_spec();
  const std::vector<ScanLayer> layers = ScanLayers(probe, options.layers);
  std::vector<std::string> names;
  for (const ScanLayer& layer : layers) names.push_back(layer.name);
  if (source.size() == 0) throw InputError("the dataset holds no images");
  for (ScanConsumer* consumer : consumers) consumer->Begin(layers, source.size());
  ViewSpec view{names, false};
  view.inference = true;
  view.channels_last = true;  // consumers read the maps positions-major
  BatchPrefetcher prefetcher(source, static_cast<size_t>(options.batch), spec.height, spec.width, 0,
                             DecodeThreads(options.decode_threads, model.device()), model.device().is_cuda());
  ScanSummary summary;
  ImageBatch batch;
  size_t done = 0;
  at::NoGradGuard no_grad;
  while (prefetcher.Next(&batch)) {
    for (const auto& failure : batch.failures) summary.skipped.push_back(failure);
    done += batch.indices.size() + batch.failures.size();
    if (!batch.indices.empty()) {
      ProbeOutput out;
      {
        const AutocastGuard autocast(options.precision, model.device());
        out = probe.Run(view, model.Preprocess(batch.images));
      }
      std::vector<at::Tensor> maps;
      for (const at::Tensor& tap : out.taps) maps.push_back(detail::PositionsMajor(tap.to(at::kFloat)));
      const ScanBatch scan =
          detail::MakeScanBatch(maps, std::vector<int64_t>(batch.indices.begin(), batch.indices.end()));
      for (ScanConsumer* consumer : consumers) consumer->Consume(scan);
      summary.images += batch.indices.size();
    }
    if (progress) progress(done, source.size());
  }
  if (summary.images == 0) throw InputError("no image of the dataset could be decoded");
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace cnnviz
