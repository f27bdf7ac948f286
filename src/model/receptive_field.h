// Receptive fields and channel axes of every value of a tap graph, by walking its aten ops (private
// header).
#pragma once

#include <torch/script.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "cnnviz/model/layer.h"

namespace cnnviz::detail {

// What the walk knows about one value that derives from the input image (a tensor, or a list or tuple
// of tensors): the receptive field of its positions and how its dimensions map to the image's.
struct SpatialField {
  ReceptiveField field;
  int64_t extent[2] = {0, 0};  // height and width of the feature map
  // Logical axis of each dimension: 0 batch, 1 channels, 2 rows, 3 columns. {0, 2, 3, 1} inside a
  // ConvNeXt block (channels-last); a channel shuffle's 5-D view holds two channel dimensions.
  std::vector<int8_t> layout{0, 1, 2, 3};
  // The first op on the path from the input whose spatial behaviour the walk does not model ("" when
  // none). A field that is global only for this reason is a guess: the Probe measures it instead.
  std::string unmodelled;

  // The first dimension holding channels (1 when none does).
  int64_t channel_axis() const;
  bool nchw() const;
};

// Walks the top block of `graph` from its input (an HxW image) through convolutions, pooling, padding,
// per-position ops (elementwise; layer_norm and linear over channels), channel concatenation (also of
// lists built with append, as DenseNet's blocks do), channel splits, permutes and channel shuffles
// (view/transpose/view). Ops that mix positions across the whole map (global pooling, flatten, linear
// over features) make a value global; any other op makes it global and names itself in `unmodelled`.
std::unordered_map<const torch::jit::Value*, SpatialField> ComputeReceptiveFields(
    torch::jit::Graph& graph, const torch::jit::Module& module, int64_t height, int64_t width);

}  // namespace cnnviz::detail
