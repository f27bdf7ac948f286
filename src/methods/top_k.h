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
        values(at::full({static_cast<int64_t>(channels.size()), 0}, -INFINITY, at::kFloat)),
        images(at::zeros({static_cast<int64_t>(channels.size()), 0}, at::kLong)),
        positions(at::zeros({static_cast<int64_t>(channels.size()), 0}, at::kLong)),
        width(map_width) {}

  at::Tensor units;      // [U] channel indices kept
  at::Tensor values;     // [U, k]
  at::Tensor images;     // [U, k] image indices
  at::Tensor positions;  // [U, k] flat position in the map
  at::Tensor maps;       // [U, k, H*W] the units' maps on their top images, when keep_maps
  int64_t width = 0;
  bool keep_maps = false;

  void Update(const at::Tensor& activations, const at::Tensor& image_indices, int64_t k) {
    // activations [B, C, H, W] -> per kept unit its maximum and where: [U, B].
    const at::Tensor selected = activations.index_select(1, units.to(activations.device())).flatten(2);
    const auto [maxima, argmax] = selected.max(2);
    const at::Tensor batch_values = maxima.t().to(at::kCPU, at::kFloat);
    const at::Tensor batch_positions = argmax.t().to(at::kCPU);
    const at::Tensor batch_images = image_indices.unsqueeze(0).expand_as(batch_values);
    const at::Tensor all_values = at::cat({values, batch_values}, 1);
    const auto [kept, order] = all_values.topk(std::min<int64_t>(k, all_values.size(1)), 1);
    images = at::cat({images, batch_images}, 1).gather(1, order);
    positions = at::cat({positions, batch_positions}, 1).gather(1, order);
    if (keep_maps) {
      const at::Tensor batch_maps = selected.transpose(0, 1).to(at::kCPU, at::kFloat);  // [U, B, HW]
      const at::Tensor all_maps = maps.defined() ? at::cat({maps, batch_maps}, 1) : batch_maps;
      maps = all_maps.gather(1, order.unsqueeze(2).expand({order.size(0), order.size(1), all_maps.size(2)}));
    }
    values = kept;
  }
};

}  // namespace cnnviz::detail
