// Receptive fields of every value of a tap graph, by walking its aten ops (private header).
#pragma once

#include <torch/script.h>

#include <unordered_map>

#include "cnnviz/model/layer.h"

namespace cnnviz::detail {

// Receptive field plus the spatial size of the value it belongs to.
struct SpatialField {
  ReceptiveField field;
  int64_t extent[2] = {0, 0};  // height and width of the feature map
};

// Walks the top block of `graph` from its input (an HxW image) through convolutions, pooling, padding
// and spatially elementwise ops. Any other op that consumes a spatial value makes its output global.
std::unordered_map<const torch::jit::Value*, SpatialField> ComputeReceptiveFields(
    torch::jit::Graph& graph, const torch::jit::Module& module, int64_t height, int64_t width);

}  // namespace cnnviz::detail
