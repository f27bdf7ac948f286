#include "cnnviz/methods/network_dissection.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/workers.h"
#include "cnnviz/data/prefetch.h"
#include "src/methods/map_scan.h"
#include "src/methods/top_k.h"

namespace cnnviz {
namespace {

// One image's labels, prepared once (on the decoding thread) for every layer's tally.
struct PreparedLabels {
  int64_t height = 0, width = 0;
  at::Tensor has;           // [C] int64 0/1: the image carries labels of the category
  at::Tensor image_categories;  // [C] int64 0/1: the image has an image-level label of that primary category
  // The labelled (pixel, label) pairs over all categories, sorted by pixel: within a category a label
  // is unioned over the category's maps; a label in two categories of the image appears twice.
  at::Tensor pixel, label;  // [P] int64
  at::Tensor image_labels;  // [Q] int64 image-level labels over all categories (with repeats)
  at::Tensor area_labels, area_counts;  // label areas of this image: labels [n], pixels [n] int64
};

PreparedLabels Prepare(const Segmentation& segmentation, const std::vector<int64_t>& primary, bool union_maps) {
  const auto label_count = static_cast<int64_t>(primary.size());
  PreparedLabels out;
  out.height = segmentation.height;
  out.width = segmentation.width;
  const int64_t pixels = segmentation.height * segmentation.width;
  std::vector<int64_t> area(static_cast<size_t>(label_count), 0);
  std::vector<int64_t> has, image_labels, image_categories(segmentation.pixel.size(), 0);
  std::vector<std::pair<int64_t, int64_t>> pairs;  // (pixel, label)
  int64_t pixel_categories = 0;
  for (size_t c = 0; c < segmentation.pixel.size(); ++c) {
    has.push_back(segmentation.Has(c) ? 1 : 0);
    for (int64_t label : segmentation.image[c]) {
      if (label <= 0 || label >= label_count) continue;  // unknown to label.csv: unlabelled
      area[label] += pixels;
      image_labels.push_back(label);
      if (primary[label] >= 0) image_categories[primary[label]] = 1;
    }
    if (!segmentation.pixel[c].defined()) continue;
    ++pixel_categories;
    // Labels unknown to label.csv count as unlabelled. With union_maps, several maps of a category are
    // unioned per label (a label another map of the category already gave the pixel is not counted again).
    const at::Tensor maps = segmentation.pixel[c].to(at::kLong).contiguous();  // [maps, h, w]
    const int64_t* codes = maps.data_ptr<int64_t>();
    const int64_t count = maps.size(0);
    auto known = [&](int64_t code) { return code > 0 && code < label_count; };
    for (int64_t p = 0; p < pixels; ++p) {
      for (int64_t m = 0; m < count; ++m) {
        const int64_t code = codes[m * pixels + p];
        if (!known(code)) continue;
        bool repeat = false;
        for (int64_t earlier = 0; union_maps && earlier < m && !repeat; ++earlier) {
          repeat = codes[earlier * pixels + p] == code;
        }
        if (repeat) continue;
        pairs.emplace_back(p, code);
        ++area[code];
      }
    }
  }
  // Sorted by pixel: each category's pairs already are; a label in two categories appears twice.
  if (pixel_categories > 1) {
    std::stable_sort(pairs.begin(), pairs.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  }
  out.has = at::tensor(has, at::kLong);
  out.image_categories = at::tensor(image_categories, at::kLong);
  out.image_labels = at::tensor(image_labels, at::kLong);
  std::vector<int64_t> pixel(pairs.size()), label(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    pixel[i] = pairs[i].first;
    label[i] = pairs[i].second;
  }
  out.pixel = at::tensor(pixel, at::kLong);
  out.label = at::tensor(label, at::kLong);
  std::vector<int64_t> area_labels, area_counts;
  for (int64_t l = 0; l < label_count; ++l) {
    if (area[l] == 0) continue;
    area_labels.push_back(l);
    area_counts.push_back(area[l]);
  }
  out.area_labels = at::tensor(area_labels, at::kLong);
  out.area_counts = at::tensor(area_counts, at::kLong);
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

// Exact top-`keep` values of every unit over a stream of batches. Once a unit holds `keep` values only
// those above its cut (its keep-th largest so far) can enter, and a map whose maximum is not above the
// cut is passed over without reading it again; at q = 0.005 that is most maps. A unit's candidates are
// merged (one selection, not a sort) when they add up to another `keep`. Units are independent and
// processed in parallel.
struct TopValues {
  // Candidates are merged once they number kMergeAt * keep: merging costs about keep + pending, and the
  // cut rises at each merge, so the factor trades selection work against values let in.
  static constexpr int64_t kMergeAt = 2;
  int64_t keep = 1;
  std::vector<std::vector<float>> values;   // per unit: its largest values so far, at most `keep`, unsorted
  std::vector<std::vector<float>> pending;  // per unit: values above its cut, not merged yet
  std::vector<float> cut;                   // per unit: its keep-th largest value so far (-inf until then)

  // activations [B, P, K] positions-major, contiguous float on the CPU; maxima [B, K] their maps' maxima.
  void Update(const at::Tensor& activations, const at::Tensor& maxima) {
    const int64_t batch = activations.size(0), positions = activations.size(1), units = activations.size(2);
    if (cut.empty()) {
      values.resize(units);
      pending.resize(units);
      cut.assign(units, -INFINITY);
    }
    const float* data = activations.data_ptr<float>();
    const float* peaks = maxima.data_ptr<float>();
    // Units in parallel, in blocks of 16 tested together at each position.
    at::parallel_for(0, units, 16, [&](int64_t begin, int64_t end) {
      detail::CollectAbove(data, batch, positions, units, peaks, cut.data(), begin, end, pending.data());
      for (int64_t k = begin; k < end; ++k) {
        if (static_cast<int64_t>(pending[k].size()) >= kMergeAt * keep) Merge(k);
      }
    });
  }

  void Merge(int64_t k) {
    std::vector<float>& kept = values[k];
    kept.insert(kept.end(), pending[k].begin(), pending[k].end());
    pending[k].clear();
    if (static_cast<int64_t>(kept.size()) > keep) {
      std::nth_element(kept.begin(), kept.begin() + (keep - 1), kept.end(), std::greater<float>());
      kept.resize(keep);
    }
    if (static_cast<int64_t>(kept.size()) == keep) cut[k] = *std::min_element(kept.begin(), kept.end());
  }

  void Merge() {
    for (size_t k = 0; k < values.size(); ++k) Merge(static_cast<int64_t>(k));
  }

  // A lower bound of every unit's final threshold: its keep-th largest value so far (-inf until then).
  at::Tensor LowerBound() const { return at::tensor(cut, at::kFloat); }

  // The rank-th largest value of every unit (rank <= keep), after Merge(); -inf for a unit without values.
  at::Tensor Largest(int64_t rank) const {
    std::vector<float> out(values.size(), -INFINITY);
    for (size_t k = 0; k < values.size(); ++k) {
      std::vector<float> kept = values[k];
      if (kept.empty()) continue;
      const size_t r = static_cast<size_t>(std::min<int64_t>(rank, static_cast<int64_t>(kept.size())));
      std::nth_element(kept.begin(), kept.begin() + (r - 1), kept.end(), std::greater<float>());
      out[k] = kept[r - 1];
    }
    return at::tensor(out, at::kFloat);
  }
};

// The value below which a unit is certainly inactive against `threshold` (its rounding margin).
at::Tensor Margin(const at::Tensor& threshold) { return threshold - threshold.abs() * 1e-5f - 1e-30f; }

// A layer's maps on one image: some units' planes, or every unit positions-major, with each map's maximum.
struct SparseMaps {
  at::Tensor units;  // [A] int64; undefined: every unit, `maps` positions-major
  at::Tensor maps;   // [A, h, w] planes, or [h, w, K] positions-major
  at::Tensor peaks;  // [A] or [K] float
};

struct Tally {
  at::Tensor intersection;    // [L+1, K] int64 (label-major: one contiguous row per label)
  at::Tensor label_area;      // [L+1] int64
  at::Tensor activated_area;  // [K, C] int64
};

// The labels of a batch's images of one segmentation size, gathered once for every layer's tally.
struct BatchLabels {
  int64_t height = 0, width = 0;
  at::Tensor has;           // [n, C] int64
  at::Tensor image_categories;  // [n, C] int64
  at::Tensor image_labels;  // [n, L+1] int64: image-level label counts (undefined when there are none)
  // Labelled pairs of all images sorted by key = image * S + pixel, and where each key's pairs start:
  // pairs of key q are label[start[q] .. start[q + 1]).
  at::Tensor label, start;
};

BatchLabels GatherLabels(const std::vector<const PreparedLabels*>& images, int64_t label_count) {
  BatchLabels out;
  out.height = images[0]->height;
  out.width = images[0]->width;
  const int64_t n = static_cast<int64_t>(images.size()), pixels = out.height * out.width;
  std::vector<at::Tensor> has, image_categories, keys, labels, image_keys;
  for (int64_t i = 0; i < n; ++i) {
    has.push_back(images[i]->has);
    image_categories.push_back(images[i]->image_categories);
    keys.push_back(images[i]->pixel + i * pixels);
    labels.push_back(images[i]->label);
    image_keys.push_back(images[i]->image_labels + i * label_count);
  }
  out.has = at::stack(has);
  out.image_categories = at::stack(image_categories);
  const at::Tensor key = at::cat(keys);
  out.label = at::cat(labels);
  out.start = at::zeros({n * pixels + 1}, at::kLong);
  out.start.narrow(0, 1, n * pixels).copy_(at::bincount(key, {}, n * pixels).cumsum(0));
  const at::Tensor image_key = at::cat(image_keys);
  if (image_key.numel() > 0) out.image_labels = at::bincount(image_key, {}, n * label_count).view({n, label_count});
  return out;
}

// The labels on the device that tallies them.
BatchLabels To(const BatchLabels& labels, const c10::Device& device) {
  if (device.is_cpu()) return labels;
  BatchLabels out = labels;
  out.has = labels.has.to(device, /*non_blocking=*/true);
  out.image_categories = labels.image_categories.to(device, /*non_blocking=*/true);
  if (labels.image_labels.defined()) out.image_labels = labels.image_labels.to(device, /*non_blocking=*/true);
  out.label = labels.label.to(device, /*non_blocking=*/true);
  out.start = labels.start.to(device, /*non_blocking=*/true);
  return out;
}

// Which pixels of R upsampled maps `up` [R, h, w] are above each row's threshold `thresholds` [R]: per row
// the count, and the (row, pixel) pairs in row order. On a CPU one pass over the maps; on a GPU tensor ops.
struct MaskPixels {
  at::Tensor active;  // [R] int64: |M_k| per row
  at::Tensor row, pixel;  // [H] int64
};

MaskPixels Threshold(const at::Tensor& up, const at::Tensor& thresholds) {
  MaskPixels out;
  const int64_t rows = up.size(0), size = up.size(1) * up.size(2);
  if (!up.is_cpu()) {
    const at::Tensor on = (up > thresholds.view({-1, 1, 1})).flatten(1);
    out.active = on.sum(1);
    const at::Tensor hits = on.nonzero();
    out.row = hits.select(1, 0);
    out.pixel = hits.select(1, 1);
    return out;
  }
  const at::Tensor values = up.contiguous(), limits = thresholds.contiguous();
  out.active = at::empty({rows}, at::kLong);
  std::vector<int64_t> hit_rows, hit_pixels;
  detail::MaskHits(values.data_ptr<float>(), rows, size, limits.data_ptr<float>(), out.active.data_ptr<int64_t>(),
                   &hit_rows, &hit_pixels);
  out.row = at::tensor(hit_rows, at::kLong);
  out.pixel = at::tensor(hit_pixels, at::kLong);
  return out;
}

// Adds the masks of R (image, unit) rows to a layer's tallies: `mask` at the segmentation size of
// `pixels` pixels, `units` [R] and `rows_image` [R] (index into `labels`). Only the pixels of the masks
// are visited: at q = 0.005 a small share of each map. `category_of` [L+1] int64 is each label's primary
// category, C (one past the last) for none.
void AddMasks(Tally& tally, const MaskPixels& mask, int64_t pixels, const at::Tensor& units,
              const at::Tensor& rows_image, const BatchLabels& labels, const at::Tensor& category_of,
              ActivatedArea rule) {
  const int64_t label_count = tally.label_area.size(0), all_units = tally.intersection.size(1);
  const int64_t categories = tally.activated_area.size(1), rows = units.size(0);
  const at::Tensor& active = mask.active;
  if (rule == ActivatedArea::kPresent) {
    tally.activated_area.index_add_(0, units, labels.has.index_select(0, rows_image) * active.unsqueeze(1));
  }
  if (labels.image_labels.defined()) {  // image-level labels: the whole image carries them
    tally.intersection.index_add_(1, units, (labels.image_labels.index_select(0, rows_image) * active.unsqueeze(1)).t());
  }
  // I[k, u] += the pixels of M_k labelled u: each mask pixel expands to the labels at that pixel.
  at::Tensor row_of_entry, label;  // per (mask pixel, label) entry
  if (mask.row.size(0) > 0) {
    const at::Tensor& row = mask.row;
    const at::Tensor key = rows_image.index_select(0, row) * pixels + mask.pixel;
    const at::Tensor first = labels.start.index_select(0, key);
    const at::Tensor count = labels.start.index_select(0, key + 1) - first;
    const at::Tensor hit = at::repeat_interleave(count);  // [E] the hit each (hit, label) entry comes from
    if (hit.numel() > 0) {
      const at::Tensor offset =
          at::arange(hit.size(0), hit.options()) - (count.cumsum(0) - count).index_select(0, hit);
      label = labels.label.index_select(0, first.index_select(0, hit) + offset);
      row_of_entry = row.index_select(0, hit);
      const at::Tensor keys = units.index_select(0, row_of_entry) * label_count + label;
      tally.intersection.add_(at::bincount(keys, {}, all_units * label_count).view({all_units, label_count}).t());
    }
  }
  if (rule == ActivatedArea::kCovered) {
    // A_k,cat += |M_k| where M_k covers a label of primary category cat, or the image has an image-level
    // label of primary category cat.
    at::Tensor covered = labels.image_categories.index_select(0, rows_image) > 0;  // [R, C]
    if (row_of_entry.defined()) {
      const at::Tensor keys = row_of_entry * (categories + 1) + category_of.index_select(0, label);
      const at::Tensor hits = at::bincount(keys, {}, rows * (categories + 1)).view({rows, categories + 1});
      covered = covered | (hits.narrow(1, 0, categories) > 0);
    }
    tally.activated_area.index_add_(0, units, covered.to(at::kLong) * active.unsqueeze(1));
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
  if (decode_threads < 0) throw UsageError("--workers must be >= 0");
  if (!thresholds.empty() && thresholds.size() != layers.size()) {
    throw UsageError("--thresholds gives " + std::to_string(thresholds.size()) + " file(s) for " +
                     std::to_string(layers.size()) + " layer(s): give one per layer, in --layers order");
  }
  if (!bases.empty() && bases.size() != layers.size()) {
    throw UsageError("dissection bases: " + std::to_string(bases.size()) + " for " + std::to_string(layers.size()) +
                     " layer(s): give one per layer (undefined = none)");
  }
}

namespace {

// What every stage of a run reads: the layers, the view, the label table.
// An entry is one (model, layer, basis) dissected: entry l reads tap entry_tap[l] of model entry_probe[l]'s
// view, multiplied by bases[l] (transposed, on the CPU) when that is defined.
struct DissectionSetup {
  std::vector<std::string> names;  // per entry: the layer's module path
  std::vector<const LayerInfo*> infos;
  std::vector<const Probe*> probes;
  std::vector<ViewSpec> views;     // per probe: its distinct layers
  std::vector<size_t> entry_probe, entry_tap, entry_job;
  std::vector<at::Tensor> bases;   // per entry: B^T [K, K] float, or undefined
  Precision precision = Precision::kFp32;
  size_t total = 0, categories = 0;
  int64_t label_count = 0;
  std::vector<int64_t> primary;  // per label its primary category, -1 for none
  bool given = false;            // thresholds given: no threshold pass
  size_t decode_threads = 1;
};

// The bookkeeping of batch i (threshold buffers, top images, cache in the threshold pass; tallies in the
// tally pass) runs on a second thread while the caller runs the network on the next batches, at most
// kBookkeepingDepth batches behind: in batch order, one batch at a time, so results are those of a
// sequential run.
constexpr int64_t kBookkeepingDepth = 2;

// The threshold pass's state, which the tally pass and the scores read.
struct FirstPass {
  std::vector<at::Tensor> thresholds;               // per layer [K]
  std::vector<detail::LayerTopK> top_images;        // per layer, with maps
  std::map<size_t, std::vector<SparseMaps>> cache;  // maps kept for the tally pass
  std::set<size_t> skipped;                         // images that failed to decode
};

DissectionSetup MakeSetup(const std::vector<DissectionJob>& jobs, const SegmentationSource& source,
                          const DissectionOptions& options) {
  DissectionSetup setup;
  const Probe& lead = *jobs.front().probe;
  setup.decode_threads = DecodeThreads(options.decode_threads, lead.model().device());
  const InputSpec& first = lead.model().input_spec();
  std::vector<std::vector<std::string>> taps;  // per distinct probe
  for (size_t j = 0; j < jobs.size(); ++j) {
    const Probe& probe = *jobs[j].probe;
    const InputSpec& spec = probe.model().input_spec();
    if (spec.height != first.height || spec.width != first.width) {
      throw UsageError("the models take different input sizes (" + std::to_string(first.height) + "x" +
                       std::to_string(first.width) + " and " + std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                       "): dissecting them in one pass needs one size (--input-size)");
    }
    if (!jobs[j].bases.empty() && jobs[j].bases.size() != options.layers.size()) {
      throw UsageError("dissection bases: " + std::to_string(jobs[j].bases.size()) + " for " +
                       std::to_string(options.layers.size()) + " layer(s)");
    }
    // A probe listed by several jobs (other bases) runs once per batch.
    const size_t p = static_cast<size_t>(std::find(setup.probes.begin(), setup.probes.end(), &probe) - setup.probes.begin());
    if (p == setup.probes.size()) {
      setup.probes.push_back(&probe);
      taps.emplace_back();
    }
    for (size_t l = 0; l < options.layers.size(); ++l) {
      const std::string& layer = options.layers[l];
      const LayerInfo& info = probe.FindUnits(layer);
      if (info.shape.size() != 4) {
        throw UsageError("layer '" + layer + "' has no spatial extent: dissection needs convolutional feature maps");
      }
      const auto found = std::find(taps[p].begin(), taps[p].end(), info.name);
      setup.entry_tap.push_back(static_cast<size_t>(found - taps[p].begin()));
      if (found == taps[p].end()) taps[p].push_back(info.name);
      setup.entry_probe.push_back(p);
      setup.entry_job.push_back(j);
      setup.names.push_back(info.name);
      setup.infos.push_back(&info);
      at::Tensor basis = !jobs[j].bases.empty() ? jobs[j].bases[l] : options.bases.empty() ? at::Tensor() : options.bases[l];
      if (basis.defined()) {
        if (basis.dim() != 2 || basis.size(0) != info.units || basis.size(1) != info.units) {
          throw UsageError("the basis given for layer '" + layer + "' has shape " + c10::str(basis.sizes()) +
                           "; the layer has " + std::to_string(info.units) + " units");
        }
        basis = basis.to(at::kCPU, at::kFloat).t().contiguous();
      }
      setup.bases.push_back(basis);
    }
  }
  for (const auto& names : taps) {
    ViewSpec view{names, false};
    view.inference = true;
    view.channels_last = true;  // the maps are read positions-major
    setup.views.push_back(view);
  }
  setup.total = source.size();
  setup.categories = source.categories().size();
  setup.label_count = static_cast<int64_t>(source.labels().size());
  setup.primary.assign(static_cast<size_t>(setup.label_count), -1);
  for (int64_t c = 0; c < setup.label_count; ++c) setup.primary[static_cast<size_t>(c)] = source.labels()[c].category;
  setup.given = !options.thresholds.empty();
  setup.precision = options.precision;
  CheckPrecision(options.precision, lead.model().device());
  return setup;
}

// Every entry's positions-major maps [B, h, w, K] (float, CPU) of a batch of images in [0, 1]: each model
// runs its view once, each entry takes its tap, changed to its basis.
std::vector<at::Tensor> EntryMaps(const DissectionSetup& setup, const at::Tensor& images) {
  std::vector<ProbeOutput> outputs;
  for (size_t p = 0; p < setup.probes.size(); ++p) {
    const Model& model = setup.probes[p]->model();
    const at::Tensor input = model.Preprocess(images);
    const AutocastGuard autocast(setup.precision, model.device());
    outputs.push_back(setup.probes[p]->Run(setup.views[p], input));
  }
  std::vector<at::Tensor> maps;
  for (size_t l = 0; l < setup.names.size(); ++l) {
    at::Tensor map = detail::PositionsMajor(outputs[setup.entry_probe[l]].taps[setup.entry_tap[l]]);
    if (setup.bases[l].defined()) map = map.matmul(setup.bases[l]).contiguous();
    maps.push_back(map);
  }
  return maps;
}

// Given thresholds: checked against the layers, rounded down to float32 (map > t is unchanged for maps in
// float32); the threshold pass is then skipped.
std::vector<at::Tensor> GivenThresholds(const DissectionSetup& setup, const DissectionOptions& options) {
  const std::vector<const LayerInfo*>& infos = setup.infos;
  std::vector<at::Tensor> thresholds;
  for (size_t l = 0; setup.given && l < setup.names.size(); ++l) {
    const at::Tensor& t = options.thresholds[l];
    if (t.dim() != 1 || t.size(0) != infos[l]->units) {
      throw InputError("the thresholds given for layer '" + options.layers[l] + "' have shape " +
                       c10::str(t.sizes()) + "; the layer has " + std::to_string(infos[l]->units) +
                       " units: expected [" + std::to_string(infos[l]->units) + "]");
    }
    const at::Tensor wide = t.to(at::kDouble).contiguous();
    if (!at::isfinite(wide).all().item<bool>()) {
      throw InputError("the thresholds given for layer '" + options.layers[l] + "' are not all finite");
    }
    std::vector<float> down(static_cast<size_t>(wide.size(0)));
    const double* values = wide.data_ptr<double>();
    for (size_t k = 0; k < down.size(); ++k) {
      down[k] = static_cast<float>(values[k]);
      if (static_cast<double>(down[k]) > values[k]) down[k] = std::nextafter(down[k], -INFINITY);
    }
    thresholds.push_back(at::tensor(down, at::kFloat));
  }
  return thresholds;
}

// Stage 1, the threshold pass: every image through the view once; exact per-unit thresholds (the
// quantile), each unit's top images with their maps, the maps the tally pass may reuse (within
// cache_mb); the consumers fed. With given thresholds nothing runs here: the tally pass runs the network
// and keeps the top images.
FirstPass ThresholdPass(const Probe& probe, const DissectionSetup& setup, const SegmentationSource& source,
                        const DissectionOptions& options, const NetworkDissection::Progress& progress,
                        const std::vector<ScanConsumer*>& consumers, DissectionResult& result) {
  const Model& model = probe.model();
  const InputSpec& spec = model.input_spec();
  const std::vector<std::string>& names = setup.names;
  const std::vector<const LayerInfo*>& infos = setup.infos;
  const size_t total = setup.total;
  const bool given = setup.given;
  const size_t decode_threads = setup.decode_threads;
  FirstPass first;
  first.thresholds = GivenThresholds(setup, options);
  std::vector<at::Tensor>& thresholds = first.thresholds;
  {
    std::vector<ScanLayer> scan_layers;
    for (size_t l = 0; l < names.size(); ++l) {
      scan_layers.push_back({names[l], infos[l]->units, infos[l]->shape[2], infos[l]->shape[3]});
    }
    for (ScanConsumer* consumer : consumers) consumer->Begin(scan_layers, total);
  }
  // Pass 1: exact thresholds and top images.
  const auto start = std::chrono::steady_clock::now();
  std::vector<TopValues> tops(names.size());
  std::vector<detail::LayerTopK>& top_images = first.top_images;
  for (size_t l = 0; l < names.size(); ++l) {
    const int64_t per_image = infos[l]->shape[2] * infos[l]->shape[3];
    tops[l].keep = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(options.quantile * total * per_image)));
    std::vector<int64_t> all(infos[l]->units);
    for (int64_t u = 0; u < infos[l]->units; ++u) all[u] = u;
    top_images.emplace_back(all, infos[l]->shape[3]);
    top_images.back().keep_maps = true;
  }
  std::set<size_t>& skipped = first.skipped;
  // First-pass activations kept for the second pass, within the memory budget: image -> per layer the
  // maps of the units that may still be active on it. A unit whose peak on an image is below (the margin
  // of) its running threshold -- the keep-th largest value seen so far, a lower bound of the final
  // threshold -- can have no mask there, so only the few others are kept (a small share at q = 0.005).
  std::map<size_t, std::vector<SparseMaps>>& cache = first.cache;
  int64_t cache_bytes = 0;
  const int64_t cache_limit = options.cache_mb * 1024 * 1024;
  Workers bookkeeping(1);  // see kBookkeepingDepth
  if (!given) {
    BatchPrefetcher prefetcher(source, static_cast<size_t>(options.batch), spec.height, spec.width, 0, decode_threads,
                               model.device().is_cuda());
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
        std::vector<at::Tensor> layer_maps = EntryMaps(setup, batch.images);
        bookkeeping.WaitUntilPending(kBookkeepingDepth - 1);
        bookkeeping.Post([&, layer_maps = std::move(layer_maps), images = batch.indices] {
          at::NoGradGuard no_grad;
          const at::Tensor indices = at::tensor(std::vector<int64_t>(images.begin(), images.end()), at::kLong);
          std::vector<std::vector<SparseMaps>> entries(images.size());
          int64_t batch_bytes = 0;
          const bool caching = cache_bytes < cache_limit;
          ScanBatch scan;
          scan.images.assign(images.begin(), images.end());
          for (size_t l = 0; l < names.size(); ++l) {
            const at::Tensor& maps = layer_maps[l];  // [B, h, w, K]
            const int64_t units = maps.size(3), positions = maps.size(1) * maps.size(2);
            const at::Tensor flat = maps.view({maps.size(0), positions, units});
            const auto [maxima, argmax] = detail::ChannelMaxima(flat);
            tops[l].Update(flat, maxima);
            top_images[l].Update(flat.transpose(1, 2), indices, options.top_images, maxima, argmax);
            scan.maps.push_back(flat);
            scan.maxima.push_back(maxima);
            scan.argmax.push_back(argmax);
          }
          for (ScanConsumer* consumer : consumers) consumer->Consume(scan);
          for (size_t l = 0; l < names.size(); ++l) {
            const at::Tensor& maps = layer_maps[l];  // [B, h, w, K]
            const int64_t units = maps.size(3), positions = maps.size(1) * maps.size(2);
            const at::Tensor flat = scan.maps[l];
            const at::Tensor& maxima = scan.maxima[l];
            if (!caching) continue;
            const at::Tensor floor = Margin(tops[l].LowerBound());
            const at::Tensor may = maxima >= floor.unsqueeze(0);  // [B, K]
            for (size_t b = 0; b < images.size(); ++b) {
              const auto row = static_cast<int64_t>(b);
              SparseMaps entry;
              entry.units = may[row].nonzero().flatten();
              entry.peaks = maxima[row].index_select(0, entry.units);
              entry.maps = at::empty({entry.units.size(0), maps.size(1), maps.size(2)}, at::kFloat);
              const int64_t* chosen = entry.units.data_ptr<int64_t>();
              const std::vector<int64_t> chosen_units(chosen, chosen + entry.units.size(0));
              detail::GatherPlanes(flat[row].data_ptr<float>(), positions, units, chosen_units,
                                   entry.maps.data_ptr<float>());
              batch_bytes += entry.maps.numel() * 4 + entry.units.numel() * 12;
              entries[b].push_back(std::move(entry));
            }
          }
          if (caching && cache_bytes + batch_bytes <= cache_limit) {
            cache_bytes += batch_bytes;
            result.cache_bytes = cache_bytes;
            for (size_t b = 0; b < images.size(); ++b) cache[images[b]] = std::move(entries[b]);
          } else if (caching) {
            cache_bytes = cache_limit;  // full: later images are recomputed in the second pass
          }
        });
      }
      if (progress) progress(1, done, total);
    }
    bookkeeping.Wait();
  }
  const size_t used = total - skipped.size();
  if (used == 0) throw InputError("no image of the dataset could be decoded");
  for (size_t l = 0; !given && l < names.size(); ++l) {
    const int64_t values = static_cast<int64_t>(used) * infos[l]->shape[2] * infos[l]->shape[3];
    const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(options.quantile * values)));
    tops[l].Merge();
    thresholds.push_back(tops[l].Largest(rank));
  }

  result.threshold_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return first;
}

// Stage 2, the tally pass: per layer the label x unit intersections, label areas and activated areas
// (NetDissect-Lite's rules), from the cached maps or one more forward pass, masks on the model's device.
std::vector<Tally> TallyPass(const Probe& probe, const DissectionSetup& setup, const SegmentationSource& source,
                             const DissectionOptions& options, const NetworkDissection::Progress& progress,
                             const std::vector<ScanConsumer*>& consumers, FirstPass& first, DissectionResult& result) {
  const Model& model = probe.model();
  const InputSpec& spec = model.input_spec();
  const std::vector<std::string>& names = setup.names;
  const std::vector<const LayerInfo*>& infos = setup.infos;
  const size_t total = setup.total;
  const bool given = setup.given;
  const size_t decode_threads = setup.decode_threads;
  const size_t categories = setup.categories;
  const int64_t label_count = setup.label_count;
  const std::vector<int64_t>& primary = setup.primary;
  const std::vector<at::Tensor>& thresholds = first.thresholds;
  std::vector<detail::LayerTopK>& top_images = first.top_images;
  std::map<size_t, std::vector<SparseMaps>>& cache = first.cache;
  std::set<size_t>& skipped = first.skipped;
  // Images and masks are decoded on a second thread while the network runs.
  const auto start = std::chrono::steady_clock::now();
  Workers bookkeeping(1);  // see kBookkeepingDepth
  std::vector<at::Tensor> margins;
  for (const at::Tensor& threshold : thresholds) margins.push_back(Margin(threshold));
  // Masks are upsampled and tallied on the model's device: on a GPU the tally is otherwise what limits
  // the pass (measured on an H100: 3.5 ms per 112x112 image on the CPU against 0.05 ms for the network).
  const c10::Device device = model.device();
  const auto counts = at::TensorOptions().dtype(at::kLong).device(device);
  std::vector<Tally> tallies(names.size());
  std::vector<at::Tensor> device_thresholds;
  for (size_t l = 0; l < names.size(); ++l) {
    tallies[l].intersection = at::zeros({label_count, infos[l]->units}, counts);
    tallies[l].label_area = at::zeros({label_count}, at::kLong);
    tallies[l].activated_area = at::zeros({infos[l]->units, static_cast<int64_t>(categories)}, counts);
    device_thresholds.push_back(thresholds[l].to(device));
  }
  std::vector<int64_t> category_index(primary);
  for (int64_t& c : category_index) c = c < 0 ? static_cast<int64_t>(categories) : c;
  const at::Tensor category_of = at::tensor(category_index, at::kLong).to(device);
  // Decoding threads read which images are cached from this snapshot; the main thread empties the cache.
  std::vector<char> cached(total, 0);
  for (const auto& entry : cache) cached[entry.first] = 1;
  auto decode = [&](size_t begin, size_t end) {
    SampleBatch out;
    for (size_t i = begin; i < end; ++i) {
      if (skipped.count(i)) continue;
      try {
        Sample sample;
        sample.index = i;
        sample.labels = Prepare(source.LoadSegmentation(i), primary, options.union_maps);
        if (!cached[i]) {  // cached images need only their labels
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
  Prefetcher<SampleBatch> prefetcher(total, static_cast<size_t>(options.batch), decode, decode_threads);
  SampleBatch batch;
  size_t done = 0;
  at::NoGradGuard no_grad;
  // Posted bookkeeping reads this pass's locals (tallies, margins), declared after `bookkeeping`: on an
  // error it must end before they are destroyed.
  DrainOnExit drain(bookkeeping);
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
    std::vector<at::Tensor> dense;  // per layer the uncached samples' maps, [n, h, w, K]
    if (!images.empty()) {
      const std::vector<at::Tensor> entry_maps = EntryMaps(setup, at::stack(images));
      for (size_t l = 0; l < names.size(); ++l) {
        dense.push_back(entry_maps[l]);
        for (size_t j = 0; j < uncached.size(); ++j) {
          maps[uncached[j]].push_back(SparseMaps{at::Tensor(), dense[l][static_cast<int64_t>(j)], at::Tensor()});
        }
      }
    }
    result.images += batch.samples.size();
    bookkeeping.WaitUntilPending(kBookkeepingDepth - 1);
    bookkeeping.Post([&, samples = std::make_shared<SampleBatch>(std::move(batch)),
                      maps = std::make_shared<std::vector<std::vector<SparseMaps>>>(std::move(maps)),
                      dense = std::move(dense), uncached = std::move(uncached)] {
      at::NoGradGuard no_grad;
      const SampleBatch& batch = *samples;
      std::vector<int64_t> uncached_images;
      for (size_t b : uncached) uncached_images.push_back(static_cast<int64_t>(batch.samples[b].index));
      const at::Tensor indices = at::tensor(uncached_images, at::kLong);
      ScanBatch scan;
      scan.images = uncached_images;
      for (size_t l = 0; l < dense.size(); ++l) {
        const at::Tensor& layer = dense[l];
        const at::Tensor flat = layer.view({layer.size(0), -1, layer.size(3)});
        const auto [maxima, argmax] = detail::ChannelMaxima(flat);
        for (size_t j = 0; j < uncached.size(); ++j) (*maps)[uncached[j]][l].peaks = maxima[static_cast<int64_t>(j)];
        // With given thresholds this is the only pass: it also keeps the top images and feeds consumers.
        if (given) top_images[l].Update(flat.transpose(1, 2), indices, options.top_images, maxima, argmax);
        scan.maps.push_back(flat);
        scan.maxima.push_back(maxima);
        scan.argmax.push_back(argmax);
      }
      if (given && !uncached_images.empty()) {
        for (ScanConsumer* consumer : consumers) consumer->Consume(scan);
      }
      // Label areas do not depend on the layer: one sum per batch.
      {
        std::vector<at::Tensor> area_labels, area_counts;
        for (const auto& sample : batch.samples) {
          area_labels.push_back(sample.labels.area_labels);
          area_counts.push_back(sample.labels.area_counts);
        }
        const at::Tensor area =
            at::zeros({label_count}, at::kLong).index_add_(0, at::cat(area_labels), at::cat(area_counts));
        for (auto& tally : tallies) tally.label_area.add_(area);
      }
      // Images of one segmentation size are tallied together (all of them, in Broden).
      std::map<std::pair<int64_t, int64_t>, std::vector<size_t>> sizes;
      for (size_t b = 0; b < batch.samples.size(); ++b) {
        sizes[{batch.samples[b].labels.height, batch.samples[b].labels.width}].push_back(b);
      }
      for (const auto& [size, members] : sizes) {
        std::vector<const PreparedLabels*> prepared;
        for (size_t b : members) prepared.push_back(&batch.samples[b].labels);
        const BatchLabels labels = To(GatherLabels(prepared, label_count), device);
        // Bilinear upsampling is a convex combination of map values, so a unit whose map never exceeds its
        // threshold has an empty mask: only the others are upsampled (a small share at q = 0.005). The
        // margin keeps units within rounding of their threshold on the exact path.
        for (size_t l = 0; l < names.size(); ++l) {
          const int64_t positions = infos[l]->shape[2] * infos[l]->shape[3], channels = infos[l]->units;
          const float* margin = margins[l].data_ptr<float>();
          // Which maps may pass: planes of a cached entry (by slot), channels of a positions-major one.
          std::vector<std::pair<const SparseMaps*, std::vector<int64_t>>> picks;
          std::vector<int64_t> unit_ids, image_ids;
          for (size_t j = 0; j < members.size(); ++j) {
            const SparseMaps& entry = (*maps)[members[j]][l];
            const float* peak = entry.peaks.data_ptr<float>();
            std::vector<int64_t> slots;
            const int64_t count = entry.units.defined() ? entry.units.size(0) : channels;
            const int64_t* unit_of = entry.units.defined() ? entry.units.data_ptr<int64_t>() : nullptr;
            for (int64_t a = 0; a < count; ++a) {
              const int64_t unit = unit_of ? unit_of[a] : a;
              if (!(peak[a] >= margin[unit])) continue;
              slots.push_back(a);
              unit_ids.push_back(unit);
              image_ids.push_back(static_cast<int64_t>(j));
            }
            if (!slots.empty()) picks.emplace_back(&entry, std::move(slots));
          }
          if (unit_ids.empty()) continue;
          const int64_t rows = static_cast<int64_t>(unit_ids.size());
          at::Tensor selected = at::empty({rows, infos[l]->shape[2], infos[l]->shape[3]}, at::kFloat);
          float* out = selected.data_ptr<float>();
          for (const auto& [entry, slots] : picks) {
            const float* data = entry->maps.data_ptr<float>();
            if (entry->units.defined()) {
              for (int64_t a : slots) out = std::copy(data + a * positions, data + (a + 1) * positions, out);
            } else {
              detail::GatherPlanes(data, positions, channels, slots, out);
              out += static_cast<int64_t>(slots.size()) * positions;
            }
          }
          const at::Tensor units = at::tensor(unit_ids, at::kLong).to(device, /*non_blocking=*/true);
          const at::Tensor rows_image = at::tensor(image_ids, at::kLong).to(device, /*non_blocking=*/true);
          // Maps already at the segmentation size are their own bilinear upsampling (weights 1 and 0,
          // which ATen computes anyway: identical for finite maps, measured at 1.2 ns a value).
          const at::Tensor maps = selected.to(device, /*non_blocking=*/true);
          const bool same_size = maps.size(1) == size.first && maps.size(2) == size.second;
          const at::Tensor up =
              same_size ? maps : at::upsample_bilinear2d(maps.unsqueeze(0), {size.first, size.second}, false)[0];
          const MaskPixels mask = Threshold(up, device_thresholds[l].index_select(0, units));
          AddMasks(tallies[l], mask, size.first * size.second, units, rows_image, labels, category_of,
                   options.activated_area);
        }
      }
    });
    batch = SampleBatch();
    if (progress) progress(2, done, total);
  }
  bookkeeping.Wait();
  for (auto& tally : tallies) {  // label 0 (unlabelled pixels) collected counts nobody scores
    tally.intersection = tally.intersection.cpu();
    tally.activated_area = tally.activated_area.cpu();
    tally.intersection[0].zero_();
    tally.label_area[0] = 0;
  }
  result.tally_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (result.images == 0) throw InputError("no image of the dataset could be decoded");
  return tallies;
}

// Stage 3, the scores of layer l: IoU of every unit with every label, the best label per category and
// overall, detectors and unique concepts per category.
LayerDissection ScoreLayer(const DissectionSetup& setup, size_t l, const Tally& tally, const FirstPass& first,
                           const DissectionOptions& options) {
  const std::vector<const LayerInfo*>& infos = setup.infos;
  const size_t categories = setup.categories;
  const int64_t label_count = setup.label_count;
  const std::vector<int64_t>& primary = setup.primary;
  const std::vector<at::Tensor>& thresholds = first.thresholds;
  const std::vector<detail::LayerTopK>& top_images = first.top_images;
  const std::vector<std::string>& names = setup.names;
  LayerDissection layer;
  layer.name = names[l];
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
    for (int64_t c = 1; c < label_count; ++c) {  // within a category, ties go to the lower label number
      if (primary[c] < 0) continue;
      const double iou = ious[k][c];
      LabelScore& best_in = unit.per_category[primary[c]];
      if (iou > best_in.iou) best_in = {c, iou};
    }
    for (size_t c = 0; c < categories; ++c) {  // across categories, to the later category
      const LabelScore& best_in = unit.per_category[c];
      if (best_in.label > 0 && best_in.iou >= unit.best.iou) {
        unit.best = best_in;
        unit.category = static_cast<int64_t>(c);
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
  return layer;
}

}  // namespace


DissectionResult NetworkDissection::Run(const SegmentationSource& source, const DissectionOptions& options,
                                        const Progress& progress, const std::vector<ScanConsumer*>& consumers) const {
  options.Check();
  const DissectionSetup setup = MakeSetup({DissectionJob{&probe_, {}}}, source, options);
  DissectionResult result;
  result.thresholds_given = setup.given;
  FirstPass first = ThresholdPass(probe_, setup, source, options, progress, consumers, result);
  const std::vector<Tally> tallies = TallyPass(probe_, setup, source, options, progress, consumers, first, result);
  for (size_t l = 0; l < setup.names.size(); ++l) result.layers.push_back(ScoreLayer(setup, l, tallies[l], first, options));
  return result;
}

std::vector<DissectionResult> NetworkDissection::RunModels(const std::vector<DissectionJob>& jobs,
                                                           const SegmentationSource& source,
                                                           const DissectionOptions& options, const Progress& progress) {
  options.Check();
  if (jobs.empty()) throw UsageError("no model to dissect");
  if (!options.thresholds.empty() && jobs.size() > 1) {
    throw UsageError("given thresholds belong to one model: dissect several models with computed thresholds");
  }
  const DissectionSetup setup = MakeSetup(jobs, source, options);
  DissectionResult joint;
  joint.thresholds_given = setup.given;
  FirstPass first = ThresholdPass(*jobs.front().probe, setup, source, options, progress, {}, joint);
  const std::vector<Tally> tallies = TallyPass(*jobs.front().probe, setup, source, options, progress, {}, first, joint);
  std::vector<DissectionResult> results(jobs.size());
  for (size_t l = 0; l < setup.names.size(); ++l) {
    DissectionResult& result = results[setup.entry_job[l]];
    result.layers.push_back(ScoreLayer(setup, l, tallies[l], first, options));
  }
  for (DissectionResult& result : results) {
    result.images = joint.images;
    result.thresholds_given = joint.thresholds_given;
    result.cached_images = joint.cached_images;
    result.cache_bytes = joint.cache_bytes;
    result.skipped = joint.skipped;
    result.threshold_seconds = joint.threshold_seconds;
    result.tally_seconds = joint.tally_seconds;
  }
  return results;
}

at::Tensor InterpolatedRotation(int64_t units, double alpha, uint64_t seed) {
  if (units < 1) throw UsageError("a rotation needs at least one unit");
  if (!(alpha >= 0 && alpha <= 1)) throw UsageError("rotation amounts must be in [0, 1]");
  const auto doubles = at::TensorOptions().dtype(at::kDouble);
  if (alpha == 0) return at::eye(units, doubles);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed * 2862933555777941757ULL + 3037000493ULL);
  const at::Tensor gaussian = at::randn({units, units}, generator, doubles);
  auto [q, r] = at::linalg_qr(gaussian);
  q = q * r.diagonal().sign().unsqueeze(0);                      // uniform (Haar) orthogonal
  if (at::linalg_det(q).item<double>() < 0) q.select(1, 0).neg_();  // a rotation: det +1
  if (alpha == 1) return q;
  auto [values, vectors] = at::linalg_eig(q);
  const at::Tensor angles = at::angle(values);  // eigenvalues on the unit circle, in conjugate pairs
  const at::Tensor powered = at::polar(at::ones_like(angles), angles * alpha);
  const at::Tensor rotation = at::matmul(vectors * powered.unsqueeze(0), at::linalg_inv(vectors));
  return at::real(rotation).contiguous();
}

at::Tensor NetworkDissection::TopImageMask(const LayerDissection& layer, int64_t unit, int64_t rank, int64_t height,
                                            int64_t width) {
  const at::Tensor map = layer.top_maps[unit][rank].unsqueeze(0).unsqueeze(0);
  return at::upsample_bilinear2d(map, {height, width}, false)[0][0] > layer.thresholds[unit];
}

}  // namespace cnnviz
