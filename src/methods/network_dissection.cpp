#include "cnnviz/methods/network_dissection.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "cnnviz/core/error.h"
#include "cnnviz/data/prefetch.h"
#include "src/methods/top_k.h"

namespace cnnviz {
namespace {

// One image's labels, prepared once (on the decoding thread) for every layer's tally.
struct PreparedLabels {
  int64_t height = 0, width = 0;
  std::vector<bool> has;                       // per category: the image carries labels of it
  std::vector<std::vector<int64_t>> image;     // per category: image-level labels
  std::vector<at::Tensor> present;             // per category: pixel labels present [U] int64 (or undefined)
  // Per category, the labelled (pixel, label) pairs, union over the category's maps: pixel index [P]
  // and the label's slot in `present` [P].
  std::vector<at::Tensor> pixel_index, pixel_slot;
  at::Tensor area_labels, area_counts;         // label areas of this image: labels [n], pixels [n] int64
};

PreparedLabels Prepare(const Segmentation& segmentation, int64_t label_count) {
  PreparedLabels out;
  out.height = segmentation.height;
  out.width = segmentation.width;
  const int64_t pixels = segmentation.height * segmentation.width;
  at::Tensor area = at::zeros({label_count}, at::kLong);
  for (size_t c = 0; c < segmentation.pixel.size(); ++c) {
    out.has.push_back(segmentation.Has(c));
    out.image.push_back(segmentation.image[c]);
    for (int64_t label : segmentation.image[c]) area[label] += pixels;
    out.present.emplace_back();
    out.pixel_index.emplace_back();
    out.pixel_slot.emplace_back();
    if (!segmentation.pixel[c].defined()) continue;
    // Labels unknown to label.csv count as unlabelled; several maps of a category are unioned per label.
    const at::Tensor maps = segmentation.pixel[c].flatten(1);  // [maps, S]
    const at::Tensor codes = maps.masked_fill(maps >= label_count, 0);
    const at::Tensor seen = at::bincount(codes.flatten(), {}, label_count) > 0;
    seen[0] = false;
    const at::Tensor present = seen.nonzero().flatten();
    if (present.numel() == 0) continue;
    const at::Tensor onehot = (codes.unsqueeze(1) == present.view({1, -1, 1})).any(0);  // [U, S]
    const at::Tensor pairs = onehot.nonzero();                                          // [P, 2]: slot, pixel
    out.present.back() = present;
    out.pixel_slot.back() = pairs.select(1, 0).contiguous();
    out.pixel_index.back() = pairs.select(1, 1).contiguous();
    area.index_add_(0, present, onehot.sum(1));
  }
  const at::Tensor nonzero = area.nonzero().flatten();
  out.area_labels = nonzero;
  out.area_counts = area.index_select(0, nonzero);
  return out;
}

struct Sample {
  size_t index = 0;
  at::Tensor image;  // [3,H,W] at the model input size (undefined when its maps are cached)
  PreparedLabels labels;
};

struct SampleBatch {
  std::vector<Sample> samples;
  std::vector<std::pair<size_t, std::string>> failures;
};

// Exact top-`keep` values of every unit over a stream of batches. Once the buffer is full only values
// above a unit's current keep-th largest can enter; those few are gathered (one masked_select, then a
// scatter into rows padded with -inf) and merged only when they add up to another `keep`, so most
// batches cost one comparison pass and one gather instead of a full top-k.
struct TopValues {
  at::Tensor values;   // [K, <= keep], descending
  at::Tensor pending;  // [K, P] candidates not merged yet (-inf padding)
  int64_t keep = 1;

  void Update(const at::Tensor& activations) {  // [B, K, H, W]
    const at::Tensor flat = activations.transpose(0, 1).flatten(1).to(at::kCPU, at::kFloat);  // [K, B*H*W]
    if (!values.defined() || values.size(1) < keep) {
      const at::Tensor merged = values.defined() ? at::cat({values, flat}, 1) : flat;
      values = std::get<0>(merged.topk(std::min<int64_t>(keep, merged.size(1)), 1));
      return;
    }
    const at::Tensor above = flat > values.select(1, keep - 1).unsqueeze(1);
    const at::Tensor counts = above.sum(1);
    const int64_t most = counts.max().item<int64_t>();
    if (most == 0) return;
    // The candidates in unit order, and each one's rank within its unit.
    const int64_t units = flat.size(0);
    const at::Tensor found = flat.masked_select(above);
    const at::Tensor unit = at::arange(units, at::kLong).repeat_interleave(counts);
    const at::Tensor rank = at::arange(found.size(0), at::kLong) - (counts.cumsum(0) - counts).index_select(0, unit);
    at::Tensor candidates = at::full({units, most}, -INFINITY, at::kFloat);
    candidates.view({-1}).index_put_({unit * most + rank}, found);
    pending = pending.defined() ? at::cat({pending, candidates}, 1) : candidates;
    if (pending.size(1) >= keep) Merge();
  }

  // A lower bound of every unit's final threshold: its keep-th largest value so far (-inf until then).
  at::Tensor LowerBound() const {
    if (!values.defined() || values.size(1) < keep) return at::full({values.defined() ? values.size(0) : 0}, -INFINITY);
    return values.select(1, keep - 1);
  }

  void Merge() {
    if (!pending.defined()) return;
    values = std::get<0>(at::cat({values, pending}, 1).topk(keep, 1));
    pending = at::Tensor();
  }
};

// The value below which a unit is certainly inactive against `threshold` (its rounding margin).
at::Tensor Margin(const at::Tensor& threshold) { return threshold - threshold.abs() * 1e-5f - 1e-30f; }

// Some units' maps on one image: units [A] int64 (undefined = all, in order) and maps [A, h, w].
struct SparseMaps {
  at::Tensor units;
  at::Tensor maps;
};

struct Tally {
  at::Tensor intersection;    // [L+1, K] int64 (label-major: one contiguous row per label)
  at::Tensor label_area;      // [L+1] int64
  at::Tensor activated_area;  // [K, C] int64
};

// Adds one image's labels to the label areas (once per image and layer, whatever its masks).
void AddLabels(Tally& tally, const PreparedLabels& labels) {
  tally.label_area.index_add_(0, labels.area_labels, labels.area_counts);
}

// Adds one image's masks. `mask` [A, S] float (0/1) at the segmentation size, for the units `units` [A]
// (the others have empty masks on this image and add nothing).
void AddMasks(Tally& tally, const at::Tensor& mask, const at::Tensor& units, const PreparedLabels& labels) {
  const at::Tensor active = mask.sum(1).round().to(at::kLong);  // |M_k|
  const int64_t all_units = tally.intersection.size(1);
  for (size_t c = 0; c < labels.has.size(); ++c) {
    if (!labels.has[c]) continue;
    tally.activated_area.select(1, static_cast<int64_t>(c)).index_add_(0, units, active);
    for (int64_t label : labels.image[c]) tally.intersection[label].index_add_(0, units, active);
    if (!labels.present[c].defined()) continue;
    // I[u, k] = sum over the pixels s labelled u of M_k(s): one weighted bincount over keys k * U + u.
    const int64_t count = mask.size(0), slots = labels.present[c].size(0);
    const at::Tensor keys =
        (at::arange(count, at::kLong).mul_(slots).unsqueeze(1) + labels.pixel_slot[c].unsqueeze(0)).flatten();
    const at::Tensor weights = mask.index_select(1, labels.pixel_index[c]).flatten();
    const at::Tensor counts = at::bincount(keys, weights, count * slots).view({count, slots}).t().round().to(at::kLong);
    at::Tensor rows = counts;
    if (count != all_units) rows = at::zeros({slots, all_units}, at::kLong).index_copy_(1, units, counts);
    tally.intersection.index_add_(0, labels.present[c], rows);
  }
}

}  // namespace

void DissectionOptions::Check() const {
  if (layers.empty()) throw UsageError("--layers is required");
  if (!(quantile > 0 && quantile < 1)) throw UsageError("--quantile must be in (0, 1)");
  if (!(iou_threshold >= 0 && iou_threshold <= 1)) throw UsageError("--iou-threshold must be in [0, 1]");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (top_images < 1) throw UsageError("top images per unit must be at least 1");
  if (cache_mb < 0) throw UsageError("--cache-mb must be >= 0");
}

DissectionResult NetworkDissection::Run(const SegmentationSource& source, const DissectionOptions& options,
                                        const Progress& progress) const {
  options.Check();
  const Model& model = probe_.model();
  const InputSpec& spec = model.input_spec();
  std::vector<std::string> names;
  std::vector<const LayerInfo*> infos;
  for (const auto& layer : options.layers) {
    const LayerInfo& info = probe_.Find(layer);
    if (info.shape.size() != 4) {
      throw UsageError("layer '" + layer + "' has no spatial extent: dissection needs convolutional feature maps");
    }
    names.push_back(info.name);
    infos.push_back(&info);
  }
  ViewSpec view{names, false};
  view.inference = true;
  const size_t total = source.size();
  const size_t categories = source.categories().size();
  const int64_t label_count = static_cast<int64_t>(source.labels().size());
  DissectionResult result;

  // Pass 1: exact thresholds and top images.
  auto start = std::chrono::steady_clock::now();
  std::vector<TopValues> tops(names.size());
  std::vector<detail::LayerTopK> top_images;
  for (size_t l = 0; l < names.size(); ++l) {
    const int64_t per_image = infos[l]->shape[2] * infos[l]->shape[3];
    tops[l].keep = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(options.quantile * total * per_image)));
    std::vector<int64_t> all(infos[l]->units);
    for (int64_t u = 0; u < infos[l]->units; ++u) all[u] = u;
    top_images.emplace_back(all, infos[l]->shape[3]);
    top_images.back().keep_maps = true;
  }
  std::set<size_t> skipped;
  // First-pass activations kept for the second pass, within the memory budget: image -> per layer the
  // maps of the units that may still be active on it. A unit whose peak on an image is below (the margin
  // of) its running threshold -- the keep-th largest value seen so far, a lower bound of the final
  // threshold -- can have no mask there, so only the few others are kept (a small share at q = 0.005).
  std::map<size_t, std::vector<SparseMaps>> cache;
  int64_t cache_bytes = 0;
  const int64_t cache_limit = options.cache_mb * 1024 * 1024;
  {
    BatchPrefetcher prefetcher(source, static_cast<size_t>(options.batch), spec.height, spec.width);
    ImageBatch batch;
    size_t done = 0;
    at::NoGradGuard no_grad;
    while (prefetcher.Next(&batch)) {
      for (const auto& failure : batch.failures) {
        skipped.insert(failure.first);
        result.skipped.push_back(failure);
      }
      done += batch.indices.size() + batch.failures.size();
      if (!batch.indices.empty()) {
        const ProbeOutput out = probe_.Run(view, model.Preprocess(batch.images));
        const at::Tensor indices =
            at::tensor(std::vector<int64_t>(batch.indices.begin(), batch.indices.end()), at::kLong);
        std::vector<std::vector<SparseMaps>> entries(batch.indices.size());
        int64_t batch_bytes = 0;
        const bool caching = cache_bytes < cache_limit;
        for (size_t l = 0; l < names.size(); ++l) {
          const at::Tensor maps = out.taps[l].to(at::kCPU, at::kFloat);
          tops[l].Update(maps);
          top_images[l].Update(maps, indices, options.top_images);
          if (!caching) continue;
          const at::Tensor floor = Margin(tops[l].LowerBound());
          const at::Tensor may = std::get<0>(maps.flatten(2).max(2)) >= floor.unsqueeze(0);  // [B, K]
          for (size_t b = 0; b < batch.indices.size(); ++b) {
            SparseMaps entry;
            entry.units = may[static_cast<int64_t>(b)].nonzero().flatten();
            entry.maps = maps[static_cast<int64_t>(b)].index_select(0, entry.units);
            batch_bytes += entry.maps.numel() * 4 + entry.units.numel() * 8;
            entries[b].push_back(std::move(entry));
          }
        }
        if (caching && cache_bytes + batch_bytes <= cache_limit) {
          cache_bytes += batch_bytes;
          for (size_t b = 0; b < batch.indices.size(); ++b) cache[batch.indices[b]] = std::move(entries[b]);
        } else if (caching) {
          cache_bytes = cache_limit;  // full: later images are recomputed in the second pass
        }
      }
      if (progress) progress(1, done, total);
    }
  }
  const size_t used = total - skipped.size();
  if (used == 0) throw InputError("no image of the dataset could be decoded");
  std::vector<at::Tensor> thresholds;
  for (size_t l = 0; l < names.size(); ++l) {
    const int64_t values = static_cast<int64_t>(used) * infos[l]->shape[2] * infos[l]->shape[3];
    const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(options.quantile * values)));
    tops[l].Merge();
    thresholds.push_back(tops[l].values.select(1, std::min(rank, tops[l].values.size(1)) - 1).contiguous());
  }
  std::vector<at::Tensor> margins;
  for (const at::Tensor& threshold : thresholds) margins.push_back(Margin(threshold));
  result.threshold_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Pass 2: tallies. Images and masks are decoded on a second thread while the network runs.
  start = std::chrono::steady_clock::now();
  std::vector<Tally> tallies(names.size());
  for (size_t l = 0; l < names.size(); ++l) {
    tallies[l].intersection = at::zeros({label_count, infos[l]->units}, at::kLong);
    tallies[l].label_area = at::zeros({label_count}, at::kLong);
    tallies[l].activated_area = at::zeros({infos[l]->units, static_cast<int64_t>(categories)}, at::kLong);
  }
  auto decode = [&](size_t begin, size_t end) {
    SampleBatch out;
    for (size_t i = begin; i < end; ++i) {
      if (skipped.count(i)) continue;
      try {
        Sample sample;
        sample.index = i;
        sample.labels = Prepare(source.LoadSegmentation(i), label_count);
        if (!cache.count(i)) {  // cached images need only their labels
          at::Tensor image = source.Load(i);
          if (image.size(1) != spec.height || image.size(2) != spec.width) {
            image = at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false).squeeze(0);
          }
          sample.image = image;
        }
        out.samples.push_back(std::move(sample));
      } catch (const Error& e) {
        out.failures.emplace_back(i, e.what());
      }
    }
    return out;
  };
  Prefetcher<SampleBatch> prefetcher(total, static_cast<size_t>(options.batch), decode);
  SampleBatch batch;
  size_t done = 0;
  at::NoGradGuard no_grad;
  while (prefetcher.Next(&batch)) {
    for (const auto& failure : batch.failures) {
      skipped.insert(failure.first);
      result.skipped.push_back(failure);
    }
    done = std::min(total, done + static_cast<size_t>(options.batch));
    if (batch.samples.empty()) continue;
    // Maps of every sample, per layer: from the cache, or from one forward pass over the others.
    std::vector<std::vector<SparseMaps>> maps(batch.samples.size());
    std::vector<at::Tensor> images;
    std::vector<size_t> uncached;
    for (size_t b = 0; b < batch.samples.size(); ++b) {
      auto it = cache.find(batch.samples[b].index);
      if (it != cache.end()) {
        maps[b] = std::move(it->second);
        cache.erase(it);
        ++result.cached_images;
      } else {
        images.push_back(batch.samples[b].image);
        uncached.push_back(b);
      }
    }
    if (!images.empty()) {
      const ProbeOutput out = probe_.Run(view, model.Preprocess(at::stack(images)));
      for (size_t l = 0; l < names.size(); ++l) {
        const at::Tensor layer_maps = out.taps[l].to(at::kCPU, at::kFloat);
        for (size_t j = 0; j < uncached.size(); ++j) {
          maps[uncached[j]].push_back(SparseMaps{at::Tensor(), layer_maps[static_cast<int64_t>(j)]});
        }
      }
    }
    // Bilinear upsampling is a convex combination of map values, so a unit whose map never exceeds its
    // threshold has an empty mask: only the others are upsampled (a small share at q = 0.005). The
    // margin keeps units within rounding of their threshold on the exact path.
    for (size_t l = 0; l < names.size(); ++l) {
      for (size_t b = 0; b < batch.samples.size(); ++b) {
        const PreparedLabels& labels = batch.samples[b].labels;
        AddLabels(tallies[l], labels);
        const SparseMaps& entry = maps[b][l];
        if (entry.maps.size(0) == 0) continue;
        const at::Tensor floor = entry.units.defined() ? margins[l].index_select(0, entry.units) : margins[l];
        const at::Tensor peaks = std::get<0>(entry.maps.flatten(1).max(1));
        const at::Tensor rows = (peaks >= floor).nonzero().flatten();
        if (rows.numel() == 0) continue;
        const at::Tensor units = entry.units.defined() ? entry.units.index_select(0, rows) : rows;
        const at::Tensor active = rows.numel() == entry.maps.size(0) ? entry.maps : entry.maps.index_select(0, rows);
        const at::Tensor up = at::upsample_bilinear2d(active.unsqueeze(0), {labels.height, labels.width}, false)[0];
        const at::Tensor mask =
            (up > thresholds[l].index_select(0, units).view({-1, 1, 1})).flatten(1).to(at::kFloat);
        AddMasks(tallies[l], mask, units, labels);
      }
    }
    result.images += batch.samples.size();
    if (progress) progress(2, done, total);
  }
  for (auto& tally : tallies) {  // label 0 (unlabelled pixels) collected counts nobody scores
    tally.intersection[0].zero_();
    tally.label_area[0] = 0;
  }
  result.tally_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Scores.
  const auto& labels = source.labels();
  std::vector<int64_t> primary(label_count, -1);
  for (int64_t c = 0; c < label_count; ++c) primary[c] = labels[c].category;
  for (size_t l = 0; l < names.size(); ++l) {
    LayerDissection layer;
    layer.name = names[l];
    const Tally& tally = tallies[l];
    layer.intersection = tally.intersection.t().contiguous();
    layer.label_area = tally.label_area;
    layer.activated_area = tally.activated_area;
    layer.thresholds = thresholds[l];
    layer.top_maps = top_images[l].maps.view({infos[l]->units, -1, infos[l]->shape[2], infos[l]->shape[3]});
    const int64_t units = infos[l]->units;
    // A_k,primary(c) for every label: [K, L+1]; labels without a primary category score 0.
    at::Tensor area = at::zeros({units, label_count}, at::kDouble);
    at::Tensor valid = at::zeros({label_count}, at::kBool);
    for (int64_t c = 1; c < label_count; ++c) {
      if (primary[c] < 0) continue;
      area.select(1, c).copy_(tally.activated_area.select(1, primary[c]).to(at::kDouble));
      valid[c] = true;
    }
    const at::Tensor intersection = layer.intersection.to(at::kDouble);
    const at::Tensor denominator = area + tally.label_area.to(at::kDouble).unsqueeze(0) - intersection;
    layer.iou = at::where(valid.unsqueeze(0) & (denominator > 0), intersection / denominator.clamp_min(1e-12),
                          at::zeros_like(intersection));
    layer.detectors_per_category.assign(categories, 0);
    std::vector<std::set<int64_t>> concepts(categories);
    const at::Tensor top_values = top_images[l].values, top_indices = top_images[l].images;
    const auto ious = layer.iou.accessor<double, 2>();
    const auto unit_thresholds = thresholds[l].accessor<float, 1>();
    for (int64_t k = 0; k < units; ++k) {
      UnitDissection unit;
      unit.unit = k;
      unit.threshold = unit_thresholds[k];
      unit.per_category.assign(categories, LabelScore{});
      for (int64_t c = 1; c < label_count; ++c) {
        if (primary[c] < 0) continue;
        const double iou = ious[k][c];
        LabelScore& best_in = unit.per_category[primary[c]];
        if (iou > best_in.iou) best_in = {c, iou};
        if (iou > unit.best.iou) {
          unit.best = {c, iou};
          unit.category = primary[c];
        }
      }
      if (unit.best.label > 0 && unit.best.iou > options.iou_threshold) {
        ++layer.detectors;
        ++layer.detectors_per_category[unit.category];
        concepts[unit.category].insert(unit.best.label);
      }
      for (int64_t j = 0; j < top_values.size(1); ++j) {
        unit.top_images.emplace_back(top_indices[k][j].item<int64_t>(), top_values[k][j].item<float>());
      }
      layer.units.push_back(unit);
    }
    for (size_t c = 0; c < categories; ++c) layer.unique_concepts.push_back(static_cast<int64_t>(concepts[c].size()));
    result.layers.push_back(std::move(layer));
  }
  return result;
}

at::Tensor NetworkDissection::TopImageMask(const LayerDissection& layer, int64_t unit, int64_t rank, int64_t height,
                                            int64_t width) {
  const at::Tensor map = layer.top_maps[unit][rank].unsqueeze(0).unsqueeze(0);
  return at::upsample_bilinear2d(map, {height, width}, false)[0][0] > layer.thresholds[unit];
}

}  // namespace cnnviz
