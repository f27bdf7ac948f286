#include "cnnviz/methods/deconvnet.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "src/methods/top_k.h"

namespace cnnviz {
namespace {

// A layer whose units can be projected: feature maps [N, C, H, W], or class logits [N, C].
const LayerInfo& ProjectableLayer(const Probe& probe, const std::string& name) {
  const LayerInfo& layer = probe.FindUnits(name);
  if (layer.shape.size() != 4 && layer.shape.size() != 2) {
    std::string shape;
    for (size_t i = 0; i < layer.shape.size(); ++i) shape += (i ? "x" : "") + std::to_string(layer.shape[i]);
    throw UsageError("layer '" + name + "' has output " + shape +
                     ": DeconvNet projects units of feature maps [N,C,H,W] or of class outputs [N,C]");
  }
  return layer;
}

// A tap as [N, C, H, W]: class outputs [N, C] become 1x1 maps.
at::Tensor AsMaps(const at::Tensor& tap) { return tap.dim() == 2 ? tap.view({tap.size(0), tap.size(1), 1, 1}) : tap; }

void CheckUnits(const std::vector<int64_t>& units, const LayerInfo& layer, const std::string& name) {
  for (int64_t u : units) {
    if (u >= layer.units) {
      throw UsageError("unit " + std::to_string(u) + " is out of range for layer '" + name + "' (" +
                       std::to_string(layer.units) + " units: 0-" + std::to_string(layer.units - 1) + ")");
    }
  }
}

}  // namespace

void DeconvOptions::Check() const {
  if (layers.empty()) throw UsageError("--layer/--layers is required");
  if (top < 1) throw UsageError("--top must be at least 1");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (decode_threads < 0) throw UsageError("--workers must be >= 0");
  if (seed_from != "auto" && seed_from != "max" && seed_from != "map" && seed_from != "sum" && seed_from != "position") {
    throw UsageError("--seed-from must be auto, max, map, sum or position, not '" + seed_from + "'");
  }
  if (!position.empty() && (position.size() != 2 || position[0] < 0 || position[1] < 0)) {
    throw UsageError("--position takes two non-negative numbers: row,column in the layer's map");
  }
  if (!position.empty() && seed_from != "position") throw UsageError("--position needs --seed-from position");
  for (int64_t unit : units) {
    if (unit < 0) throw UsageError("units must be non-negative");
  }
}

std::vector<UnitTop> DeconvNet::Scan(const ImageSource& source, const DeconvOptions& options, ScanStats* stats,
                                     const Progress& progress) const {
  options.Check();
  const auto start = std::chrono::steady_clock::now();
  const Model& model = probe_.model();
  const InputSpec& spec = model.input_spec();
  std::vector<detail::LayerTopK> tops;
  std::vector<std::string> names;
  for (const auto& name : options.layers) {
    const LayerInfo& layer = ProjectableLayer(probe_, name);
    names.push_back(layer.name);
    std::vector<int64_t> units = options.units;
    if (units.empty()) {
      for (int64_t u = 0; u < layer.units; ++u) units.push_back(u);
    }
    CheckUnits(units, layer, name);
    tops.emplace_back(units, layer.shape.size() == 4 ? layer.shape[3] : 1);
  }
  if (source.size() == 0) throw InputError("the dataset holds no images");
  CheckPrecision(options.scan_precision, model.device());
  ViewSpec view{names, false};
  view.inference = true;
  view.channels_last = true;  // LayerTopK::UpdateFromTap reads the maps positions-major
  ScanStats local;
  ScanStats& out = stats ? *stats : local;
  BatchPrefetcher prefetcher(source, static_cast<size_t>(options.batch), spec.height, spec.width, options.max_images,
                             DecodeThreads(options.decode_threads, model.device()), model.device().is_cuda());
  const size_t total = options.max_images ? std::min(options.max_images, source.size()) : source.size();
  ImageBatch batch;
  size_t done = 0;
  at::NoGradGuard no_grad;
  while (prefetcher.Next(&batch)) {
    for (const auto& failure : batch.failures) out.skipped.push_back(failure);
    done += batch.indices.size() + batch.failures.size();
    if (batch.indices.empty()) continue;
    const at::Tensor input = model.Preprocess(batch.images);
    ProbeOutput result;
    {
      const AutocastGuard autocast(options.scan_precision, model.device());
      result = probe_.Run(view, input);
    }
    const at::Tensor indices = at::tensor(std::vector<int64_t>(batch.indices.begin(), batch.indices.end()), at::kLong);
    for (size_t l = 0; l < tops.size(); ++l) {
      tops[l].UpdateFromTap(AsMaps(result.taps[l].to(at::kFloat)), indices, options.top);
    }
    out.images += batch.indices.size();
    if (progress) progress(done, total);
  }
  if (out.images == 0) throw InputError("no image of the dataset could be decoded");
  std::vector<UnitTop> units;
  for (size_t l = 0; l < tops.size(); ++l) {
    const detail::LayerTopK& top = tops[l];
    for (int64_t u = 0; u < top.units.size(0); ++u) {
      UnitTop unit;
      unit.layer = names[l];
      unit.unit = top.units[u].item<int64_t>();
      for (int64_t j = 0; j < top.values.size(1); ++j) {
        const int64_t position = top.positions[u][j].item<int64_t>();
        unit.top.push_back({static_cast<size_t>(top.images[u][j].item<int64_t>()), top.values[u][j].item<float>(),
                            position / top.width, position % top.width});
      }
      units.push_back(unit);
    }
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return units;
}

at::Tensor DeconvNet::ProjectBatch(const at::Tensor& inputs, const std::vector<const UnitTop*>& units,
                                   const std::vector<const TopActivation*>& tops, const DeconvOptions& options) const {
  std::vector<std::string> layers;  // distinct layers of this batch
  for (const UnitTop* unit : units) {
    if (std::find(layers.begin(), layers.end(), unit->layer) == layers.end()) layers.push_back(unit->layer);
  }
  at::Tensor input = inputs.detach().requires_grad_(true);
  ViewSpec view{layers, false, options.rule};
  const ProbeOutput out = probe_.Run(view, input);
  std::vector<at::Tensor> seeds;
  for (size_t b = 0; b < units.size(); ++b) {
    const UnitTop& unit = *units[b];
    const TopActivation& top = *tops[b];
    const size_t layer = std::find(layers.begin(), layers.end(), unit.layer) - layers.begin();
    const at::Tensor map = AsMaps(out.taps[layer])[static_cast<int64_t>(b)][unit.unit];  // [H, W]
    const bool is_class = out.taps[layer].dim() == 2;
    std::string seed = options.seed_from;
    if (seed == "auto") seed = is_class ? "position" : "max";
    int64_t y = top.y, x = top.x;
    if (seed == "position" && !options.position.empty()) {
      y = options.position[0];
      x = options.position[1];
      if (y >= map.size(0) || x >= map.size(1)) {
        throw UsageError("--position " + std::to_string(y) + "," + std::to_string(x) + " is outside layer '" +
                         unit.layer + "''s " + std::to_string(map.size(0)) + "x" + std::to_string(map.size(1)) + " map");
      }
    }
    // Zeiler & Fergus: keep this activation (or this map), zero every other, and project it down.
    if (seed == "max") {
      const at::Tensor value = map[y][x];
      seeds.push_back(value * value.detach());
    } else if (seed == "map") {
      seeds.push_back((map * map.detach()).sum());
    } else if (seed == "sum") {
      seeds.push_back(map.sum());
    } else {
      seeds.push_back(map[y][x]);
    }
  }
  at::stack(seeds).sum().backward();
  return input.grad().detach().to(at::kCPU);
}

std::vector<std::vector<at::Tensor>> DeconvNet::Project(const ImageSource& source, const std::vector<UnitTop>& units,
                                                        const DeconvOptions& options) const {
  options.Check();
  const Model& model = probe_.model();
  const InputSpec& spec = model.input_spec();
  struct Pair {
    size_t unit, rank;
  };
  std::vector<Pair> pairs;
  for (size_t u = 0; u < units.size(); ++u) {
    for (size_t r = 0; r < units[u].top.size(); ++r) pairs.push_back({u, r});
  }
  std::vector<std::vector<at::Tensor>> projections(units.size());
  for (size_t u = 0; u < units.size(); ++u) projections[u].resize(units[u].top.size());
  for (size_t begin = 0; begin < pairs.size(); begin += static_cast<size_t>(options.batch)) {
    const size_t end = std::min(pairs.size(), begin + static_cast<size_t>(options.batch));
    std::vector<at::Tensor> images;
    std::vector<const UnitTop*> batch_units;
    std::vector<const TopActivation*> batch_tops;
    for (size_t p = begin; p < end; ++p) {
      const UnitTop& unit = units[pairs[p].unit];
      at::Tensor image = source.Load(unit.top[pairs[p].rank].image);
      if (image.size(1) != spec.height || image.size(2) != spec.width) {
        image = at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false).squeeze(0);
      }
      images.push_back(image);
      batch_units.push_back(&unit);
      batch_tops.push_back(&unit.top[pairs[p].rank]);
    }
    const at::Tensor grads = ProjectBatch(model.Preprocess(at::stack(images)), batch_units, batch_tops, options);
    for (size_t p = begin; p < end; ++p) {
      projections[pairs[p].unit][pairs[p].rank] = grads[static_cast<int64_t>(p - begin)].clone();
    }
  }
  return projections;
}

std::vector<at::Tensor> DeconvNet::ProjectInput(const at::Tensor& input, const std::vector<UnitTop>& units,
                                                const DeconvOptions& options) const {
  options.Check();
  std::vector<at::Tensor> projections;
  for (size_t begin = 0; begin < units.size(); begin += static_cast<size_t>(options.batch)) {
    const size_t end = std::min(units.size(), begin + static_cast<size_t>(options.batch));
    std::vector<const UnitTop*> batch_units;
    std::vector<const TopActivation*> batch_tops;
    for (size_t u = begin; u < end; ++u) {
      batch_units.push_back(&units[u]);
      batch_tops.push_back(&units[u].top.at(0));
    }
    const at::Tensor inputs = input.expand({static_cast<int64_t>(end - begin), -1, -1, -1}).contiguous();
    const at::Tensor grads = ProjectBatch(inputs, batch_units, batch_tops, options);
    for (size_t u = begin; u < end; ++u) projections.push_back(grads[static_cast<int64_t>(u - begin)].clone());
  }
  return projections;
}

std::vector<UnitTop> DeconvNet::ImageUnits(const at::Tensor& input, const std::string& layer_name,
                                           const std::vector<int64_t>& wanted, int64_t count) const {
  const LayerInfo& layer = ProjectableLayer(probe_, layer_name);
  CheckUnits(wanted, layer, layer_name);
  at::NoGradGuard no_grad;
  const ProbeOutput out = probe_.Run(ViewSpec{{layer.name}, false}, input);
  const at::Tensor maps = AsMaps(out.taps[0])[0].flatten(1).to(at::kCPU, at::kFloat);  // [C, H*W]
  const int64_t width = out.taps[0].dim() == 4 ? out.taps[0].size(3) : 1;
  const auto [maxima, argmax] = maps.max(1);
  std::vector<int64_t> chosen = wanted;
  if (chosen.empty()) {
    const at::Tensor order = std::get<1>(maxima.topk(std::min<int64_t>(count, maxima.size(0))));
    for (int64_t i = 0; i < order.size(0); ++i) chosen.push_back(order[i].item<int64_t>());
  }
  std::vector<UnitTop> units;
  for (int64_t unit : chosen) {
    const int64_t position = argmax[unit].item<int64_t>();
    units.push_back({layer.name, unit, {{0, maxima[unit].item<float>(), position / width, position % width}}});
  }
  return units;
}

}  // namespace cnnviz
