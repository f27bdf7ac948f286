#include "src/model/receptive_field.h"

#include <torch/csrc/jit/ir/constants.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <unordered_set>

#include "src/model/tap_graph.h"

namespace cnnviz {

void ReceptiveField::Box(int64_t i, int64_t j, int64_t box[4]) const {
  const int64_t index[2] = {i, j};
  for (int d = 0; d < 2; ++d) {
    const double centre = offset[d] + static_cast<double>(index[d] * stride[d]);
    const double half = (static_cast<double>(size[d]) - 1.0) / 2.0;
    box[d] = static_cast<int64_t>(std::floor(centre - half + 1e-9));
    box[d + 2] = static_cast<int64_t>(std::floor(centre + half + 1e-9)) + 1;
  }
}

namespace detail {
namespace jit = torch::jit;

namespace {

using FieldMap = std::unordered_map<const jit::Value*, SpatialField>;

// Ops that map each spatial position to the same position (elementwise, per-pixel, channel concat).
const std::unordered_set<std::string>& PointwiseOps() {
  static const std::unordered_set<std::string> kOps = {
      "relu", "relu_", "relu6", "relu6_", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu",
      "elu_", "gelu", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "sigmoid",
      "sigmoid_", "tanh", "tanh_", "threshold", "threshold_", "prelu", "clamp", "clamp_", "clamp_min",
      "clamp_min_", "batch_norm", "dropout", "dropout_", "feature_dropout", "feature_dropout_",
      "alpha_dropout", "clone", "contiguous", "detach", "to", "type_as", "add", "add_", "sub", "sub_",
      "mul", "mul_", "div", "div_", "neg", "abs", "pow", "exp", "log", "sqrt", "rsqrt", "cat",
      "channel_shuffle", "native_channel_shuffle", "relu_rule", "clamp_rule"};
  return kOps;
}

std::optional<std::vector<int64_t>> IntList(jit::Value* value, size_t expand_to = 2) {
  std::vector<int64_t> list;
  // Lists are mutable, so constant propagation leaves prim::ListConstruct of constants in place.
  if (value->node()->kind() == c10::prim::ListConstruct) {
    for (jit::Value* element : value->node()->inputs()) {
      auto item = jit::toIValue(element);
      if (!item || !item->isInt()) return std::nullopt;
      list.push_back(item->toInt());
    }
    if (list.size() == 1) list.assign(expand_to, list[0]);
    return list;
  }
  auto constant = jit::toIValue(value);
  if (!constant) return std::nullopt;
  if (constant->isInt()) {
    list.assign(expand_to, constant->toInt());
  } else if (constant->isIntList()) {
    list = constant->toIntVector();
  } else {
    return std::nullopt;
  }
  if (list.size() == 1) list.assign(expand_to, list[0]);
  return list;
}

SpatialField Global(int64_t height, int64_t width) {
  SpatialField out;
  out.field.global = true;
  out.field.size[0] = height;
  out.field.size[1] = width;
  out.field.offset[0] = (static_cast<double>(height) - 1.0) / 2.0;
  out.field.offset[1] = (static_cast<double>(width) - 1.0) / 2.0;
  out.extent[0] = out.extent[1] = 1;
  return out;
}

// A sliding window (convolution or pooling) over `in`.
SpatialField Window(const SpatialField& in, const int64_t kernel[2], const int64_t stride[2],
                    const int64_t padding[2], const int64_t dilation[2], bool ceil_mode) {
  SpatialField out;
  for (int d = 0; d < 2; ++d) {
    const int64_t effective = dilation[d] * (kernel[d] - 1) + 1;
    out.field.size[d] = in.field.size[d] + (effective - 1) * in.field.stride[d];
    out.field.stride[d] = in.field.stride[d] * stride[d];
    out.field.offset[d] =
        in.field.offset[d] + (static_cast<double>(effective - 1) / 2.0 - padding[d]) * in.field.stride[d];
    const int64_t span = in.extent[d] + 2 * padding[d] - effective;
    int64_t size = (ceil_mode ? (span + stride[d] - 1) / stride[d] : span / stride[d]) + 1;
    if (ceil_mode && (size - 1) * stride[d] >= in.extent[d] + padding[d]) --size;
    out.extent[d] = span < 0 ? 0 : size;
  }
  return out;
}

// The smallest field covering all of `inputs` (for elementwise ops of several spatial inputs).
std::optional<SpatialField> Union(const std::vector<const SpatialField*>& inputs, int64_t height, int64_t width) {
  if (inputs.empty()) return std::nullopt;
  SpatialField out = *inputs[0];
  for (const SpatialField* in : inputs) {
    if (in->field.global) return Global(height, width);
  }
  for (int d = 0; d < 2; ++d) {
    double low = 1e300, high = -1e300;
    for (const SpatialField* in : inputs) {
      if (in->field.stride[d] != out.field.stride[d]) return Global(height, width);
      const double half = (static_cast<double>(in->field.size[d]) - 1.0) / 2.0;
      low = std::min(low, in->field.offset[d] - half);
      high = std::max(high, in->field.offset[d] + half);
      out.extent[d] = std::max(out.extent[d], in->extent[d]);
    }
    out.field.offset[d] = (low + high) / 2.0;
    out.field.size[d] = static_cast<int64_t>(std::llround(high - low)) + 1;
  }
  return out;
}

class Walker {
 public:
  Walker(const jit::Module& module, int64_t height, int64_t width)
      : module_(module), height_(height), width_(width) {}

  FieldMap Run(jit::Graph& graph) {
    SpatialField input;
    input.extent[0] = height_;
    input.extent[1] = width_;
    fields_[graph.inputs().at(1)] = input;
    for (jit::Node* node : graph.nodes()) Visit(node);
    return std::move(fields_);
  }

 private:
  const SpatialField* Find(jit::Value* value) const {
    auto it = fields_.find(value);
    return it == fields_.end() ? nullptr : &it->second;
  }

  std::optional<std::vector<int64_t>> KernelOf(jit::Value* weight) const {
    c10::IValue tensor;
    if (auto constant = jit::toIValue(weight)) tensor = *constant;
    if (!tensor.isTensor()) tensor = ResolveAttribute(weight, module_);
    if (!tensor.isTensor() || tensor.toTensor().dim() != 4) return std::nullopt;
    return std::vector<int64_t>{tensor.toTensor().size(2), tensor.toTensor().size(3)};
  }

  void Convolution(jit::Node* node, const SpatialField& in) {
    const std::string kind = node->kind().toUnqualString();
    auto kernel = KernelOf(node->input(1));
    auto stride = IntList(node->input(3));
    auto dilation = IntList(node->input(5));
    std::optional<std::vector<int64_t>> padding = IntList(node->input(4));
    if (kind == "_convolution") {
      auto transposed = jit::toIValue(node->input(6));
      if (!transposed || !transposed->isBool() || transposed->toBool()) return MarkGlobal(node);
    }
    if (!padding && kernel && dilation) {
      auto mode = jit::toIValue(node->input(4));
      if (mode && mode->isString()) {
        padding = std::vector<int64_t>(2, 0);
        if (mode->toStringRef() == "same") {
          for (int d = 0; d < 2; ++d) (*padding)[d] = (*dilation)[d] * ((*kernel)[d] - 1) / 2;
        }
      }
    }
    if (!kernel || !stride || !padding || !dilation) return MarkGlobal(node);
    fields_[node->output(0)] =
        Window(in, kernel->data(), stride->data(), padding->data(), dilation->data(), /*ceil_mode=*/false);
  }

  // max_pool2d(self, kernel, stride, padding, dilation, ceil) and avg_pool2d(self, kernel, stride,
  // padding, ceil, ...).
  void Pooling(jit::Node* node, const SpatialField& in, bool is_max) {
    auto kernel = IntList(node->input(1));
    auto stride = IntList(node->input(2));
    auto padding = IntList(node->input(3));
    std::optional<std::vector<int64_t>> dilation = std::vector<int64_t>{1, 1};
    if (is_max) dilation = IntList(node->input(4));
    auto ceil = jit::toIValue(node->input(is_max ? 5 : 4));
    if (!kernel || !stride || !padding || !dilation || !ceil || !ceil->isBool()) return MarkGlobal(node);
    if (stride->empty()) stride = kernel;
    fields_[node->output(0)] =
        Window(in, kernel->data(), stride->data(), padding->data(), dilation->data(), ceil->toBool());
  }

  void Pad(jit::Node* node, const SpatialField& in) {
    auto pad = jit::toIValue(node->input(1));
    if (!pad || !pad->isIntList() || pad->toIntVector().size() < 4) return MarkGlobal(node);
    auto amounts = pad->toIntVector();  // left, right, top, bottom
    SpatialField out = in;
    out.field.offset[1] -= static_cast<double>(amounts[0] * in.field.stride[1]);
    out.field.offset[0] -= static_cast<double>(amounts[2] * in.field.stride[0]);
    out.extent[1] += amounts[0] + amounts[1];
    out.extent[0] += amounts[2] + amounts[3];
    fields_[node->output(0)] = out;
  }

  void MarkGlobal(jit::Node* node) {
    for (jit::Value* output : node->outputs()) fields_[output] = Global(height_, width_);
  }

  void Visit(jit::Node* node) {
    std::vector<const SpatialField*> inputs;
    for (jit::Value* input : node->inputs()) {
      if (const SpatialField* field = Find(input)) inputs.push_back(field);
      if (input->node()->kind() == c10::prim::ListConstruct) {
        for (jit::Value* element : input->node()->inputs()) {
          if (const SpatialField* field = Find(element)) inputs.push_back(field);
        }
      }
    }
    if (inputs.empty() || node->outputs().empty()) return;
    const std::string kind = node->kind().toUnqualString();
    const SpatialField& first = *inputs[0];
    if (first.field.global && kind != "ListConstruct") return MarkGlobal(node);
    if (kind == "ListConstruct") return;  // its elements are read by the consumer
    if (kind == "conv2d" || kind == "_convolution") return Convolution(node, first);
    if (kind == "max_pool2d" || kind == "max_pool2d_with_indices") return Pooling(node, first, true);
    if (kind == "avg_pool2d") return Pooling(node, first, false);
    if (kind == "constant_pad_nd" || kind == "pad") return Pad(node, first);
    if (kind == "adaptive_avg_pool2d" || kind == "adaptive_max_pool2d") {
      auto size = IntList(node->input(1));
      if (size && (*size)[0] == first.extent[0] && (*size)[1] == first.extent[1]) {
        for (jit::Value* output : node->outputs()) fields_[output] = first;  // identity
        return;
      }
      return MarkGlobal(node);
    }
    if (PointwiseOps().count(kind)) {
      if (auto merged = Union(inputs, height_, width_)) fields_[node->output(0)] = *merged;
      return;
    }
    MarkGlobal(node);
  }

  const jit::Module& module_;
  int64_t height_, width_;
  FieldMap fields_;
};

}  // namespace

std::unordered_map<const jit::Value*, SpatialField> ComputeReceptiveFields(jit::Graph& graph,
                                                                         const jit::Module& module,
                                                                         int64_t height, int64_t width) {
  return Walker(module, height, width).Run(graph);
}

}  // namespace detail
}  // namespace cnnviz
