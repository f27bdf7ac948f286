// A tappable layer of a model: one call of one submodule, identified by its module path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz {

// Receptive field of a layer's units in input pixels (Araujo et al., "Computing Receptive Fields of
// Convolutional Neural Networks", Distill 2019). Unit (i, j) of the layer sees the input rows
// centred on offset[0] + i * stride[0], `size[0]` pixels tall, and likewise for columns (index 1).
// `global` is true when a unit sees the whole input (after flatten, linear, global pooling, or ops whose
// spatial behaviour cnnviz does not model); size is then the input size.
struct ReceptiveField {
  int64_t size[2] = {1, 1};
  int64_t stride[2] = {1, 1};
  double offset[2] = {0.0, 0.0};
  bool global = false;
  // How the field was found. Analytic (false): walked through the graph's ops. Measured (true): the
  // walk met an op whose spatial behaviour it does not model (`unmodelled_op`), so the Probe took the
  // support of the input gradient of the centre unit (channels randomly weighted, a few random inputs);
  // exact for the probe's input size, and stride from the neighbouring unit. `unmodelled_op` is also set when the
  // measurement could not be made (the field then stays global).
  bool measured = false;
  std::string unmodelled_op;

  // Input-pixel box [y0, x0, y1, x1) of unit (i, j), unclipped (it may extend past the image border).
  void Box(int64_t i, int64_t j, int64_t box[4]) const;
};

struct LayerInfo {
  // Module path, e.g. "layer4.1.conv2"; the k-th extra call of a module called several times is
  // "path#k".
  std::string name;
  // Alias from the sidecar ("conv5"), or "".
  std::string alias;
  // Module class, e.g. "Conv2d", "Sequential", "BasicBlock".
  std::string type;
  // Output shape for a batch of one at the probe's input size; empty when not tappable.
  std::vector<int64_t> shape;
  // Units = channels of the output (along channel_axis); 0 when not tappable.
  int64_t units = 0;
  // The output's channel axis as the Probe traces it from the input through permutes: 1 (NCHW) for
  // almost every layer; 3 inside blocks that permute to channels-last (ConvNeXt's LayerNorm + Linear).
  // Unit methods read channels on axis 1 and refuse other layers (Probe::FindUnits).
  int64_t channel_axis = 1;
  ReceptiveField receptive_field;
  // False for calls inside data-dependent control flow; `note` says why.
  bool tappable = true;
  std::string note;
};

}  // namespace cnnviz
