// Running top-k of every unit of a layer over a stream of batches (private header).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "src/methods/map_scan.h"

namespace cnnviz::detail {

// A tap [B, K, h, w] as float maps on the CPU, positions-major: [B, h, w, K] contiguous. The channels-last
// taps of a CPU view (ViewSpec::channels_last) are that already, without a copy; a GPU's are rearranged
// there before the copy.
inline at::Tensor PositionsMajor(const at::Tensor& tap) {
  return tap.permute({0, 2, 3, 1}).contiguous().to(at::kCPU, at::kFloat);
}

// Per image and channel of positions-major maps, `maps` [B, P, K] contiguous float on the CPU, the
// maximum over positions and the first position holding it: maxima [B, K] float, argmax [B, K] int64.
inline std::pair<at::Tensor, at::Tensor> ChannelMaxima(const at::Tensor& maps) {
  const int64_t batch = maps.size(0), positions = maps.size(1), channels = maps.size(2);
  at::Tensor maxima = at::empty({batch, channels}, at::kFloat), argmax = at::empty({batch, channels}, at::kLong);
  const float* data = maps.data_ptr<float>();
  float* max_out = maxima.data_ptr<float>();
  int64_t* arg_out = argmax.data_ptr<int64_t>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    ChannelMaxima(data + begin * positions * channels, end - begin, positions, channels, max_out + begin * channels,
                  arg_out + begin * channels);
  });
  return {maxima, argmax};
}

// Running top-k of every unit of one layer, updated a batch at a time without per-image loops.
struct LayerTopK {
  // Starts empty for the given channel indices; `width` is the feature map's width.
  LayerTopK() = default;
  LayerTopK(std::vector<int64_t> channels, int64_t map_width)
      : units(at::tensor(channels, at::kLong)),
        values(at::full({static_cast<int64_t>(channels.size()), 0}, -INFINITY, at::kFloat)),
        images(at::zeros({static_cast<int64_t>(channels.size()), 0}, at::kLong)),
        positions(at::zeros({static_cast<int64_t>(channels.size()), 0}, at::kLong)),
        width(map_width),
        identity(IsIdentity(channels)) {}

  at::Tensor units;      // [U] channel indices kept
  at::Tensor values;     // [U, k]
  at::Tensor images;     // [U, k] image indices
  at::Tensor positions;  // [U, k] flat position in the map
  at::Tensor maps;       // [U, k, H*W] the units' maps on their top images, when keep_maps
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
    // activations [B, C, H, W] -> per kept unit its maximum and where: [B, U].
    const at::Tensor selected =
        (identity && activations.size(1) == units.size(0) ? activations
                                                          : activations.index_select(1, units.to(activations.device())))
            .flatten(2);
    const auto [maxima, argmax] = selected.max(2);
    Update(selected, image_indices, k, maxima.to(at::kCPU, at::kFloat), argmax.to(at::kCPU));
  }

  // From a tap [B, C, H, W] of a channels-last view: on a CPU the maxima come from one pass over the
  // positions-major maps; a GPU's tap goes through Update above (only the maxima leave the device).
  void UpdateFromTap(const at::Tensor& tap, const at::Tensor& image_indices, int64_t k) {
    if (!tap.is_cpu()) {
      Update(tap, image_indices, k);
      return;
    }
    const at::Tensor maps = PositionsMajor(tap);
    const at::Tensor flat = maps.view({maps.size(0), maps.size(1) * maps.size(2), maps.size(3)});  // [B, P, C]
    auto [maxima, argmax] = ChannelMaxima(flat);
    at::Tensor selected = flat.transpose(1, 2);  // [B, C, P], read only when keep_maps
    if (!(identity && flat.size(2) == units.size(0))) {
      maxima = maxima.index_select(1, units);
      argmax = argmax.index_select(1, units);
      if (keep_maps) selected = selected.index_select(1, units);
    }
    Update(selected, image_indices, k, maxima, argmax);
  }

  // The same with the maps' maxima and their positions already known: `selected` [B, U, H*W] holds the
  // kept units' maps, `maxima` [B, U] float and `argmax` [B, U] int64 on the CPU.
  void Update(const at::Tensor& selected, const at::Tensor& image_indices, int64_t k, const at::Tensor& maxima,
              const at::Tensor& argmax) {
    const at::Tensor batch_values = maxima.t();
    const at::Tensor batch_images = image_indices.unsqueeze(0).expand_as(batch_values);
    const int64_t old_k = values.size(1);
    const at::Tensor all_values = at::cat({values, batch_values}, 1);
    const auto [kept, order] = all_values.topk(std::min<int64_t>(k, all_values.size(1)), 1);
    images = at::cat({images, batch_images}, 1).gather(1, order);
    positions = at::cat({positions, argmax.t()}, 1).gather(1, order);
    if (keep_maps) UpdateMaps(selected.to(at::kCPU, at::kFloat), order.contiguous(), old_k);
    values = kept;
  }

  // Only the winners' maps are copied, and only for units whose top list changed: late in a pass most
  // batches change few units. `batch_maps` [B, U, HW] may be any strided view (positions-major maps).
  void UpdateMaps(const at::Tensor& batch_maps, const at::Tensor& order, int64_t old_k) {  // order [U, k]
    const int64_t count = order.size(0), new_k = order.size(1), hw = batch_maps.size(2);
    const int64_t stride_b = batch_maps.stride(0), stride_u = batch_maps.stride(1), stride_p = batch_maps.stride(2);
    at::Tensor next = maps.defined() && old_k == new_k ? maps : at::empty({count, new_k, hw}, at::kFloat);
    const float* old_maps = maps.defined() ? maps.data_ptr<float>() : nullptr;
    const float* batch = batch_maps.data_ptr<float>();
    float* out = next.data_ptr<float>();
    const int64_t* winners = order.data_ptr<int64_t>();
    std::vector<float> row(static_cast<size_t>(new_k * hw));
    for (int64_t u = 0; u < count; ++u) {
      const int64_t* from = winners + u * new_k;
      bool unchanged = old_k == new_k;
      for (int64_t j = 0; j < new_k && unchanged; ++j) unchanged = from[j] == j;
      if (unchanged) continue;
      for (int64_t j = 0; j < new_k; ++j) {
        float* target = row.data() + j * hw;
        if (from[j] < old_k) {
          const float* source = old_maps + (u * old_k + from[j]) * hw;
          std::copy(source, source + hw, target);
        } else {
          const float* source = batch + (from[j] - old_k) * stride_b + u * stride_u;
          for (int64_t p = 0; p < hw; ++p) target[p] = source[p * stride_p];
        }
      }
      std::copy(row.begin(), row.end(), out + u * new_k * hw);
    }
    maps = next;
  }
};

}  // namespace cnnviz::detail
