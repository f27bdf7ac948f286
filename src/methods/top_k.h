// Running top-k of every unit of a layer over a stream of batches (private header).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

namespace cnnviz::detail {

// Running top-k of every unit of one layer, updated a batch at a time without per-image loops.
struct LayerTopK {
  // Starts empty for the given channel indices; `width` is the feature map's width.
  LayerTopK() = default;
  LayerTopK(std::vector<int64_t> channels, int64_t map_width)
      : units(at::tensor(channels, at::kLong)),
        identity(IsIdentity(channels)),
        values(at::full({static_cast<int64_t>(channels.size()), 0}, -INFINITY, at::kFloat)),
        images(at::zeros({static_cast<int64_t>(channels.size()), 0}, at::kLong)),
        positions(at::zeros({static_cast<int64_t>(channels.size()), 0}, at::kLong)),
        width(map_width) {}

  at::Tensor units;      // [U] channel indices kept
  at::Tensor values;     // [U, k]
  at::Tensor images;     // [U, k] image indices
  at::Tensor positions;  // [U, k] flat position in the map
  at::Tensor maps;       // [U, k, H*W] the units' maps on their top images, when keep_maps
  at::Tensor batch_maxima;  // [B, U] the latest batch's map maxima (on the CPU)
  int64_t width = 0;
  bool keep_maps = false;
  bool identity = false;  // units are 0..U-1: the activations need no index_select

  static bool IsIdentity(const std::vector<int64_t>& channels) {
    for (size_t i = 0; i < channels.size(); ++i) {
      if (channels[i] != static_cast<int64_t>(i)) return false;
    }
    return true;
  }

  void Update(const at::Tensor& activations, const at::Tensor& image_indices, int64_t k) {
    // activations [B, C, H, W] -> per kept unit its maximum and where: [U, B].
    const at::Tensor selected =
        (identity && activations.size(1) == units.size(0) ? activations
                                                          : activations.index_select(1, units.to(activations.device())))
            .flatten(2);
    const auto [maxima, argmax] = selected.max(2);
    const at::Tensor batch_values = maxima.t().to(at::kCPU, at::kFloat);
    batch_maxima = batch_values.t();
    const at::Tensor batch_positions = argmax.t().to(at::kCPU);
    const at::Tensor batch_images = image_indices.unsqueeze(0).expand_as(batch_values);
    const at::Tensor all_values = at::cat({values, batch_values}, 1);
    const auto [kept, order] = all_values.topk(std::min<int64_t>(k, all_values.size(1)), 1);
    images = at::cat({images, batch_images}, 1).gather(1, order);
    positions = at::cat({positions, batch_positions}, 1).gather(1, order);
    if (keep_maps) {
      // Only the k winners' maps are copied: from the kept maps (order < old k) or from the batch.
      const at::Tensor batch_maps = selected.transpose(0, 1).to(at::kCPU, at::kFloat);  // [U, B, HW], a view
      const int64_t old_k = maps.defined() ? maps.size(1) : 0;
      const auto expand = [&](const at::Tensor& index) {
        return index.unsqueeze(2).expand({index.size(0), index.size(1), batch_maps.size(2)});
      };
      const at::Tensor from_batch = batch_maps.gather(1, expand((order - old_k).clamp_min(0)));
      maps = old_k == 0 ? from_batch
                        : at::where(expand(order < old_k), maps.gather(1, expand(order.clamp_max(old_k - 1))),
                                    from_batch);
    }
    values = kept;
  }
};

}  // namespace cnnviz::detail
