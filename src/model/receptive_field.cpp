#include "src/model/receptive_field.h"

#include <torch/csrc/jit/ir/constants.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>

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

int64_t SpatialField::channel_axis() const {
  for (size_t d = 0; d < layout.size(); ++d) {
    if (layout[d] == 1) return static_cast<int64_t>(d);
  }
  return 1;
}

bool SpatialField::nchw() const { return layout == std::vector<int8_t>{0, 1, 2, 3}; }

namespace {

using FieldMap = std::unordered_map<const jit::Value*, SpatialField>;

// Ops that map each spatial position to the same position (elementwise, per-pixel).
const std::unordered_set<std::string>& PointwiseOps() {
  static const std::unordered_set<std::string> kOps = {
      "relu", "relu_", "relu6", "relu6_", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "elu",
      "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "silu_", "mish", "mish_", "hardswish",
      "hardswish_", "hardsigmoid", "hardsigmoid_", "sigmoid", "sigmoid_", "tanh", "tanh_", "threshold",
      "threshold_", "prelu", "clamp", "clamp_", "clamp_min", "clamp_min_", "batch_norm", "dropout",
      "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout", "clone", "contiguous", "detach",
      "to", "type_as", "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "abs", "pow",
      "exp", "log", "sqrt", "rsqrt", "cat", "channel_shuffle", "native_channel_shuffle", "relu_rule",
      "clamp_rule", "activation_rule", "ListConstruct", "TupleConstruct", "ListUnpack", "TupleUnpack",
      "__getitem__", "TupleIndex"};
  return kOps;
}

// Ops whose outputs mix every position of their input: a global field is the right answer for them.
const std::unordered_set<std::string>& MixingOps() {
  static const std::unordered_set<std::string> kOps = {"group_norm", "instance_norm", "matmul", "bmm", "mm",
                                                       "addmm"};
  return kOps;
}

// Whether `value` carries feature maps: a tensor, or a list, tuple or optional of tensors.
bool CarriesTensors(const jit::Value* value) {
  const c10::TypePtr& type = value->type();
  if (type->cast<c10::TensorType>()) return true;
  if (auto list = type->cast<c10::ListType>()) return list->getElementType()->cast<c10::TensorType>() != nullptr;
  if (auto optional = type->cast<c10::OptionalType>()) {
    return optional->getElementType()->cast<c10::TensorType>() != nullptr;
  }
  return type->cast<c10::TupleType>() != nullptr;
}

std::optional<int64_t> IntConstant(jit::Value* value) {
  auto constant = jit::toIValue(value);
  if (!constant || !constant->isInt()) return std::nullopt;
  return constant->toInt();
}

std::optional<std::vector<int64_t>> IntList(jit::Value* value, size_t expand_to = 2) {
  std::vector<int64_t> list;
  // Lists are mutable, so constant propagation leaves prim::ListConstruct of constants in place.
  if (value->node()->kind() == c10::prim::ListConstruct) {
    for (jit::Value* element : value->node()->inputs()) {
      auto item = IntConstant(element);
      if (!item) return std::nullopt;
      list.push_back(*item);
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

// `dim` as an index into a value of rank `rank` (negative dims count from the end), or -1.
int64_t Normalize(int64_t dim, size_t rank) {
  const auto r = static_cast<int64_t>(rank);
  if (dim < -r || dim >= r) return -1;
  return dim < 0 ? dim + r : dim;
}

SpatialField Global(int64_t height, int64_t width, std::string unmodelled = "") {
  SpatialField out;
  out.field.global = true;
  out.field.size[0] = height;
  out.field.size[1] = width;
  out.field.offset[0] = (static_cast<double>(height) - 1.0) / 2.0;
  out.field.offset[1] = (static_cast<double>(width) - 1.0) / 2.0;
  out.extent[0] = out.extent[1] = 1;
  out.unmodelled = std::move(unmodelled);
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

  SpatialField Unmodelled(jit::Node* node) const {
    return Global(height_, width_, std::string("aten::") + node->kind().toUnqualString());
  }

  // The smallest field covering all of `inputs` (elementwise ops of several inputs, concatenation).
  SpatialField Union(const std::vector<const SpatialField*>& inputs, jit::Node* node) const {
    SpatialField out = *inputs[0];
    for (const SpatialField* in : inputs) {
      if (in->field.global) return *in;
    }
    for (int d = 0; d < 2; ++d) {
      double low = 1e300, high = -1e300;
      for (const SpatialField* in : inputs) {
        if (in->field.stride[d] != out.field.stride[d]) return Unmodelled(node);  // maps of different grids
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

  std::optional<std::vector<int64_t>> KernelOf(jit::Value* weight) const {
    c10::IValue tensor;
    if (auto constant = jit::toIValue(weight)) tensor = *constant;
    if (!tensor.isTensor()) tensor = ResolveAttribute(weight, module_);
    if (!tensor.isTensor() || tensor.toTensor().dim() != 4) return std::nullopt;
    return std::vector<int64_t>{tensor.toTensor().size(2), tensor.toTensor().size(3)};
  }

  // An int list that is constant, or a scripted module's attribute (ConvNeXt's Permute keeps its dims).
  std::optional<std::vector<int64_t>> Dims(jit::Value* value) const {
    if (auto list = IntList(value, 1)) return list;
    c10::IValue attribute = ResolveAttribute(value, module_);
    if (attribute.isIntList()) return attribute.toIntVector();
    return std::nullopt;
  }

  SpatialField Convolution(jit::Node* node, const SpatialField& in) const {
    const std::string kind = node->kind().toUnqualString();
    auto kernel = KernelOf(node->input(1));
    auto stride = IntList(node->input(3));
    auto dilation = IntList(node->input(5));
    std::optional<std::vector<int64_t>> padding = IntList(node->input(4));
    if (kind == "_convolution") {
      auto transposed = jit::toIValue(node->input(6));
      if (!transposed || !transposed->isBool() || transposed->toBool()) return Unmodelled(node);
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
    if (!kernel || !stride || !padding || !dilation) return Unmodelled(node);
    return Window(in, kernel->data(), stride->data(), padding->data(), dilation->data(), /*ceil_mode=*/false);
  }

  // max_pool2d(self, kernel, stride, padding, dilation, ceil) and avg_pool2d(self, kernel, stride,
  // padding, ceil, ...).
  SpatialField Pooling(jit::Node* node, const SpatialField& in, bool is_max) const {
    auto kernel = IntList(node->input(1));
    auto stride = IntList(node->input(2));
    auto padding = IntList(node->input(3));
    std::optional<std::vector<int64_t>> dilation = std::vector<int64_t>{1, 1};
    if (is_max) dilation = IntList(node->input(4));
    auto ceil = jit::toIValue(node->input(is_max ? 5 : 4));
    if (!kernel || !stride || !padding || !dilation || !ceil || !ceil->isBool()) return Unmodelled(node);
    if (stride->empty()) stride = kernel;
    return Window(in, kernel->data(), stride->data(), padding->data(), dilation->data(), ceil->toBool());
  }

  SpatialField Pad(jit::Node* node, const SpatialField& in) const {
    auto pad = IntList(node->input(1), 1);
    if (!pad || pad->size() < 2) return Unmodelled(node);
    const std::vector<int64_t>& amounts = *pad;  // left, right[, top, bottom[, channel pads]]
    SpatialField out = in;
    for (int d = 1; d >= 0 && static_cast<size_t>(2 * (1 - d) + 1) < amounts.size(); --d) {
      const int64_t before = amounts[2 * (1 - d)], after = amounts[2 * (1 - d) + 1];
      out.field.offset[d] -= static_cast<double>(before * in.field.stride[d]);
      out.extent[d] += before + after;
    }
    return out;
  }

  // Whether the int `value` is the size of logical axis `axis` (2 rows, 3 columns) of a walked value:
  // aten::size(x, d) or an element of aten::size(x), also through traced NumToTensor/Int round trips, or
  // a constant equal to that size in `in` (traced models record sizes as constants).
  bool IsExtentOf(jit::Value* value, int8_t axis, const SpatialField& in) const {
    for (int hops = 0; hops < 4; ++hops) {
      const auto kind = value->node()->kind();
      if (kind != c10::aten::Int && kind != c10::prim::NumToTensor && kind != c10::aten::ScalarImplicit) break;
      value = value->node()->input(0);
    }
    jit::Node* node = value->node();
    if (auto constant = IntConstant(value)) return *constant == in.extent[axis - 2];
    auto layout_at = [&](jit::Value* tensor, jit::Value* dim_value, int64_t dim) -> bool {
      const SpatialField* field = Find(tensor);
      if (!field) return false;
      if (dim_value) {
        auto constant = IntConstant(dim_value);
        if (!constant) return false;
        dim = *constant;
      }
      const int64_t d = Normalize(dim, field->layout.size());
      return d >= 0 && field->layout[d] == axis;
    };
    if (node->kind() == c10::aten::size && node->inputs().size() == 2) {
      return layout_at(node->input(0), node->input(1), 0);
    }
    if (node->kind() == c10::prim::ListUnpack && node->input(0)->node()->kind() == c10::aten::size) {
      const auto index = static_cast<int64_t>(value->offset());
      return layout_at(node->input(0)->node()->input(0), nullptr, index);
    }
    if (node->kind() == c10::aten::__getitem__ && node->input(0)->node()->kind() == c10::aten::size) {
      auto index = IntConstant(node->input(1));
      return index && layout_at(node->input(0)->node()->input(0), nullptr, *index);
    }
    return false;
  }

  // view/reshape: a channel shuffle's view(n, groups, c / groups, h, w) and its inverse keep every
  // position (rows and columns stay the last two dimensions); a view to rank 2 or less mixes them all.
  SpatialField View(jit::Node* node, const SpatialField& in) const {
    if (in.layout.size() < 3 || in.layout[in.layout.size() - 2] != 2 || in.layout.back() != 3) {
      return Unmodelled(node);
    }
    jit::Value* shape = node->input(1);
    std::vector<jit::Value*> elements;
    std::optional<std::vector<int64_t>> constant;
    if (shape->node()->kind() == c10::prim::ListConstruct) {
      for (jit::Value* element : shape->node()->inputs()) elements.push_back(element);
    } else if ((constant = IntList(shape, 1))) {
      if (constant->size() <= 2) return Global(height_, width_);
      SpatialField out = in;
      const size_t rank = constant->size();
      if ((*constant)[rank - 2] != in.extent[0] || (*constant)[rank - 1] != in.extent[1]) return Unmodelled(node);
      out.layout.assign(rank, 1);
      out.layout[0] = 0;
      out.layout[rank - 2] = 2;
      out.layout[rank - 1] = 3;
      return out;
    } else {
      return Unmodelled(node);
    }
    if (elements.size() <= 2) return Global(height_, width_);
    const size_t rank = elements.size();
    if (!IsExtentOf(elements[rank - 2], 2, in) || !IsExtentOf(elements[rank - 1], 3, in)) {
      return Unmodelled(node);
    }
    SpatialField out = in;
    out.layout.assign(rank, 1);
    out.layout[0] = 0;
    out.layout[rank - 2] = 2;
    out.layout[rank - 1] = 3;
    return out;
  }

  // The field of `node`'s outputs when none of its inputs is global.
  SpatialField Transfer(jit::Node* node, const std::string& kind, const std::vector<const SpatialField*>& inputs) {
    const SpatialField& first = *inputs[0];
    const size_t rank = first.layout.size();
    if (kind == "conv2d" || kind == "_convolution") {
      return first.nchw() ? Convolution(node, first) : Unmodelled(node);
    }
    if (kind == "max_pool2d" || kind == "max_pool2d_with_indices" || kind == "avg_pool2d") {
      return first.nchw() ? Pooling(node, first, kind != "avg_pool2d") : Unmodelled(node);
    }
    if (kind == "constant_pad_nd" || kind == "pad") return first.nchw() ? Pad(node, first) : Unmodelled(node);
    if (kind == "adaptive_avg_pool2d" || kind == "adaptive_max_pool2d") {
      auto size = IntList(node->input(1));
      if (!first.nchw()) return Unmodelled(node);
      if (size && (*size)[0] == first.extent[0] && (*size)[1] == first.extent[1]) return first;  // identity
      return Global(height_, width_);
    }
    if (kind == "cat") {  // along channels (DenseNet, Inception) it keeps positions
      auto dim = IntConstant(node->input(1));
      const int64_t d = dim ? Normalize(*dim, rank) : -1;
      if (d < 0 || first.layout[d] > 1) return Unmodelled(node);
    }
    if (PointwiseOps().count(kind)) return Union(inputs, node);
    if (MixingOps().count(kind)) return Global(height_, width_);
    if (kind == "permute" || kind == "transpose") {
      std::vector<int8_t> layout = first.layout;
      if (kind == "permute") {
        auto dims = Dims(node->input(1));
        if (!dims || dims->size() != rank) return Unmodelled(node);
        for (size_t d = 0; d < rank; ++d) {
          const int64_t from = Normalize((*dims)[d], rank);
          if (from < 0) return Unmodelled(node);
          layout[d] = first.layout[from];
        }
      } else {
        auto a = IntConstant(node->input(1)), b = IntConstant(node->input(2));
        if (!a || !b || Normalize(*a, rank) < 0 || Normalize(*b, rank) < 0) return Unmodelled(node);
        std::swap(layout[Normalize(*a, rank)], layout[Normalize(*b, rank)]);
      }
      // Rows must stay before columns, or the field would be transposed.
      if (std::find(layout.begin(), layout.end(), 2) > std::find(layout.begin(), layout.end(), 3)) {
        return Unmodelled(node);
      }
      SpatialField out = first;
      out.layout = layout;
      return out;
    }
    if (kind == "layer_norm") {  // per position when it normalizes channels only (ConvNeXt's LayerNorm2d)
      auto shape = IntList(node->input(1), 1);
      if (!shape || shape->empty() || shape->size() > rank) return Unmodelled(node);
      for (size_t d = rank - shape->size(); d < rank; ++d) {
        if (first.layout[d] == 2 || first.layout[d] == 3) return Global(height_, width_);
      }
      return first;
    }
    if (kind == "linear") {  // per position on channels-last maps; over features it mixes everything
      return rank >= 3 && first.layout.back() == 1 ? first : Global(height_, width_);
    }
    if (kind == "chunk" || kind == "split" || kind == "split_with_sizes" || kind == "unsafe_chunk" ||
        kind == "unsafe_split") {
      auto dim = IntConstant(node->input(2));
      const int64_t d = dim ? Normalize(*dim, rank) : -1;
      return d >= 0 && first.layout[d] <= 1 ? first : Unmodelled(node);
    }
    if (kind == "view" || kind == "reshape") return View(node, first);
    if (kind == "flatten") {
      auto start = IntConstant(node->input(1)), end = IntConstant(node->input(2));
      if (!start || !end) return Unmodelled(node);
      const int64_t s = Normalize(*start, rank), e = Normalize(*end, rank);
      if (s < 0 || e < s) return Unmodelled(node);
      for (int64_t d = s; d <= e; ++d) {
        if (first.layout[d] == 2 || first.layout[d] == 3) return Global(height_, width_);
      }
      SpatialField out = first;
      out.layout.erase(out.layout.begin() + s + 1, out.layout.begin() + e + 1);
      return out;
    }
    if (kind == "mean" || kind == "sum" || kind == "amax" || kind == "amin") {
      auto dims = node->inputs().size() > 1 ? IntList(node->input(1), 1) : std::nullopt;
      if (!dims) return Global(height_, width_);  // a reduction over everything
      for (int64_t dim : *dims) {
        const int64_t d = Normalize(dim, rank);
        if (d < 0) return Unmodelled(node);
        if (first.layout[d] != 1) return Global(height_, width_);
      }
      return Unmodelled(node);  // a reduction over channels: rare; measured
    }
    return Unmodelled(node);
  }

  // aten::append(list, x) mutates `list`: its field (read by every later cat of it) grows by x's.
  void Append(jit::Node* node) {
    const SpatialField* item = Find(node->input(1));
    if (!item) return;
    SpatialField merged = *item;
    if (const SpatialField* list = Find(node->input(0))) merged = Union({list, item}, node);
    fields_[node->input(0)] = merged;
    fields_[node->output(0)] = merged;
  }

  void Visit(jit::Node* node) {
    std::vector<const SpatialField*> inputs;
    for (jit::Value* input : node->inputs()) {
      if (const SpatialField* field = Find(input)) inputs.push_back(field);
    }
    if (inputs.empty()) return;
    const std::string kind = node->kind().toUnqualString();
    if (kind == "append") return Append(node);
    std::vector<jit::Value*> outputs;
    for (jit::Value* output : node->outputs()) {
      if (CarriesTensors(output)) outputs.push_back(output);
    }
    if (outputs.empty()) return;
    const SpatialField* global = nullptr;
    for (const SpatialField* in : inputs) {
      if (in->field.global && (!global || (global->unmodelled.empty() && !in->unmodelled.empty()))) global = in;
    }
    SpatialField out = global ? *global : Transfer(node, kind, inputs);
    if (global) {
      // Keep tracking the layout (channels-last blocks after a global op still hold channels last).
      SpatialField shape_only = *inputs[0];
      shape_only.field = ReceptiveField();
      const bool keeps_layout = PointwiseOps().count(kind) || kind == "layer_norm" || kind == "linear";
      if (kind == "permute" || kind == "transpose" || kind == "view" || kind == "reshape") {
        out.layout = Transfer(node, kind, {&shape_only}).layout;
      } else if (!keeps_layout) {
        out.layout = {0, 1, 2, 3};
      } else {
        out.layout = inputs[0]->layout;
      }
    }
    for (jit::Value* output : outputs) fields_[output] = out;
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
