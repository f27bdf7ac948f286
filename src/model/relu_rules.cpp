#include "src/model/relu_rules.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/library.h>

#include <array>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "cnnviz/core/precision.h"
#include "src/model/cpu_loops.h"

namespace cnnviz::detail {
namespace {
namespace jit = torch::jit;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

constexpr int64_t kGradientRule = 0;
constexpr int64_t kDeconvNetRule = 1;
constexpr int64_t kGuidedRule = 2;
constexpr int64_t kRedirectedRule = 3;

// Forward: clamp(x, low, high). Backward: see BackwardRule in cnnviz/model/probe.h; the "pass" mask is
// low < x < high, as in torch's own relu and hardtanh backward.
class ClampRuleFunction : public torch::autograd::Function<ClampRuleFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double low, double high, int64_t rule) {
    ctx->saved_data["low"] = low;
    ctx->saved_data["high"] = high;
    ctx->saved_data["rule"] = rule;
    ctx->save_for_backward({x});
    return std::isinf(high) ? at::clamp_min(x, low) : at::clamp(x, low, high);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const at::Tensor& grad = grad_outputs[0];
    const double low = ctx->saved_data["low"].toDouble();
    const double high = ctx->saved_data["high"].toDouble();
    const int64_t rule = ctx->saved_data["rule"].toInt();
    auto pass = [&] { return std::isinf(high) ? x > low : (x > low).logical_and(x < high); };
    at::Tensor grad_input;
    switch (rule) {
      case kDeconvNetRule:
        grad_input = at::relu(grad);
        break;
      case kGuidedRule:
        grad_input = at::relu(grad) * pass();
        break;
      case kRedirectedRule: {  // Lucid's redirected_relu_grad / redirected_relu6_grad
        const at::Tensor true_grad = std::isinf(high) ? at::threshold_backward(grad, x, low) : grad * pass();
        if (x.dim() < 2) {
          grad_input = true_grad;
          break;
        }
        // Where no batch element's gradient is all zero (most steps) the redirection changes nothing: on a
        // CPU, where asking costs no device synchronization, skip its masks.
        const at::Tensor silent_rows = true_grad.flatten(1).abs().amax(1) == 0;
        if (x.is_cpu() && !silent_rows.any().item<bool>()) {
          grad_input = true_grad;
          break;
        }
        at::Tensor blocked = (x < low).logical_and(grad > 0);
        if (!std::isinf(high)) blocked = blocked.logical_or((x > high).logical_and(grad < 0));
        const at::Tensor redirected = grad.masked_fill(blocked, 0);
        std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
        shape[0] = x.size(0);
        const at::Tensor silent = silent_rows.view(shape);
        grad_input = at::where(silent, redirected, true_grad);
        break;
      }
      default:
        grad_input = std::isinf(high) ? at::threshold_backward(grad, x, low) : grad * pass();
        break;
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Smooth and leaky ReLU-like activations under the rules (see ActivationKind in relu_rules.h):
//   gradient   g · f'(x)                     (the activation's own backward, exactly)
//   guided     relu(g) · max(f'(x), 0)       (Springenberg's two conditions: a positive signal, passed by
//                                             a positive local slope; for ReLU this is relu(g)·[x>0])
//   deconvnet  relu(g) · s                   (Zeiler & Fergus ignore the input; s = the slope of the
//                                             activation's "on" regime: 1, SELU/ELU's scale, 1/6 for
//                                             hardsigmoid; for ReLU this is relu(g))
//   redirected the plain gradient (these activations pass gradient almost everywhere)
at::Tensor ActivationForward(const at::Tensor& x, int64_t kind, double a, double b, double c) {
  switch (kind) {
    case kSilu: return at::silu(x);
    case kGelu: return at::gelu(x, "none");
    case kGeluTanh: return at::gelu(x, "tanh");
    case kHardswish: return at::hardswish(x);
    case kHardsigmoid: return at::hardsigmoid(x);
    case kElu: return at::elu(x, a, b, c);
    case kLeakyRelu: return at::leaky_relu(x, a);
    case kMish: return at::mish(x);
    default: TORCH_CHECK(false, "cnnviz::activation_rule: unknown activation kind ", kind);
  }
}

at::Tensor ActivationBackward(const at::Tensor& grad, const at::Tensor& x, int64_t kind, double a, double b, double c) {
  switch (kind) {
    case kSilu: return at::silu_backward(grad, x);
    case kGelu: return at::gelu_backward(grad, x, "none");
    case kGeluTanh: return at::gelu_backward(grad, x, "tanh");
    case kHardswish: return at::hardswish_backward(grad, x);
    case kHardsigmoid: return at::hardsigmoid_backward(grad, x);
    case kElu: return at::elu_backward(grad, a, b, c, /*is_result=*/false, x);
    case kLeakyRelu: return at::leaky_relu_backward(grad, x, a, /*self_is_result=*/false);
    case kMish: return at::mish_backward(grad, x);
    default: TORCH_CHECK(false, "cnnviz::activation_rule: unknown activation kind ", kind);
  }
}

class ActivationRuleFunction : public torch::autograd::Function<ActivationRuleFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t kind, double a, double b, double c,
                            int64_t rule) {
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["a"] = a;
    ctx->saved_data["b"] = b;
    ctx->saved_data["c"] = c;
    ctx->saved_data["rule"] = rule;
    ctx->save_for_backward({x});
    return ActivationForward(x, kind, a, b, c);
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const at::Tensor& grad = grad_outputs[0];
    const int64_t kind = ctx->saved_data["kind"].toInt();
    const double a = ctx->saved_data["a"].toDouble(), b = ctx->saved_data["b"].toDouble(),
                 c = ctx->saved_data["c"].toDouble();
    at::Tensor grad_input;
    switch (ctx->saved_data["rule"].toInt()) {
      case kDeconvNetRule:
        grad_input = at::relu(grad) * OnSlope(kind, a, b);
        break;
      case kGuidedRule:
        grad_input = at::relu(grad) * ActivationBackward(at::ones_like(x), x, kind, a, b, c).clamp_min(0);
        break;
      default:
        grad_input = ActivationBackward(grad, x, kind, a, b, c);
        break;
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor ActivationRule(const at::Tensor& x, int64_t kind, double a, double b, double c, int64_t rule) {
  return ActivationRuleFunction::apply(x, kind, a, b, c, rule);
}

at::Tensor ReluRule(const at::Tensor& x, int64_t rule) {
  return ClampRuleFunction::apply(x, 0.0, std::numeric_limits<double>::infinity(), rule);
}

at::Tensor ClampRule(const at::Tensor& x, double low, double high, int64_t rule) {
  return ClampRuleFunction::apply(x, low, high, rule);
}

// ATen's own test (aten/src/ATen/native/Convolution.cpp, use_mkldnn) for the slow batch-1 path.
bool TakesSlowPath(const at::Tensor& input, const at::Tensor& weight, int64_t groups) {
  return input.dim() == 4 && input.size(0) == 1 && input.device().is_cpu() && input.scalar_type() == at::kFloat &&
         groups == 1 && input.numel() <= 20480 && weight.dim() == 4 && (weight.size(2) <= 3 || weight.size(3) <= 3) &&
         !(weight.size(2) == 1 && weight.size(3) == 1);
}

// The shape of a one-group, dilation-1 convolution of an input of `input_size` [N, C, H, W] by a weight
// of `weight_size` [O, C, kh, kw].
ConvShape ShapeOf(at::IntArrayRef input_size, at::IntArrayRef weight_size, at::IntArrayRef stride,
                  at::IntArrayRef padding) {
  ConvShape shape;
  shape.batch = input_size[0];
  shape.in_channels = input_size[1];
  shape.height = input_size[2];
  shape.width = input_size[3];
  shape.out_channels = weight_size[0];
  shape.kernel_h = weight_size[2];
  shape.kernel_w = weight_size[3];
  shape.stride_h = stride[0];
  shape.stride_w = stride[1];
  shape.pad_h = padding[0];
  shape.pad_w = padding[1];
  shape.out_height = (shape.height + 2 * shape.pad_h - shape.kernel_h) / std::max<int64_t>(1, shape.stride_h) + 1;
  shape.out_width = (shape.width + 2 * shape.pad_w - shape.kernel_w) / std::max<int64_t>(1, shape.stride_w) + 1;
  return shape;
}

// The output_padding that makes conv_transpose2d of `grad` [.., Ho, Wo] give back an input of `size`.
std::vector<int64_t> OutputPadding(at::IntArrayRef size, const at::Tensor& grad, at::IntArrayRef stride,
                                   at::IntArrayRef padding, int64_t kernel_h, int64_t kernel_w) {
  const int64_t kernel[2] = {kernel_h, kernel_w};
  std::vector<int64_t> output_padding(2);
  for (int i = 0; i < 2; ++i) {
    output_padding[i] = size[2 + i] - ((grad.size(2 + i) - 1) * stride[i] - 2 * padding[i] + kernel[i]);
  }
  return output_padding;
}

at::Tensor PlainConv2d(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!TakesSlowPath(input, weight, groups)) return at::conv2d(input, weight, bias, stride, padding, dilation, groups);
  return at::conv2d(input.expand({2, -1, -1, -1}), weight, bias, stride, padding, dilation, groups).narrow(0, 0, 1);
}

// The shape of a convolution whose input gradient detail::ConvInputGradient can compute, if it can.
std::optional<ConvShape> FewChannelShape(const at::Tensor& input, const at::Tensor& weight,
                                         const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!input.device().is_cpu() || input.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      input.dim() != 4 || weight.dim() != 4 || groups != 1 || !input.requires_grad() || weight.requires_grad() ||
      (bias && bias->defined() && bias->requires_grad())) {
    return std::nullopt;
  }
  if (stride.size() != 2 || padding.size() != 2 || dilation.size() != 2 || dilation[0] != 1 || dilation[1] != 1) {
    return std::nullopt;
  }
  const ConvShape shape = ShapeOf(input.sizes(), weight.sizes(), stride, padding);
  if (weight.size(1) != shape.in_channels || shape.out_height <= 0 || shape.out_width <= 0 ||
      !ConvInputGradientSupported(shape)) {
    return std::nullopt;
  }
  return shape;
}

// A convolution of an image with few channels (a network's first layer) whose backward computes the
// input's gradient with detail::ConvInputGradient instead of oneDNN (see src/model/cpu_loops.h). Only
// for frozen weights: the backward gives the input's gradient alone. When the backward itself is
// recorded (double backward, e.g. Hessian-vector products), it runs as a transposed convolution, which
// autograd can differentiate.
class FewChannelConvFunction : public torch::autograd::Function<FewChannelConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding) {
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["size"] = input.sizes().vec();
    ctx->save_for_backward({weight});
    // float32 also under autocast (AutocastGuard's float32_input_layer): its input gradient's loop below
    // reads float32.
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(
        c10::DispatchKeySet({c10::DispatchKey::AutocastCPU, c10::DispatchKey::AutocastCUDA}));
    // Not a view: autograd forbids in-place ops (relu_) on views made inside a custom function.
    const at::Tensor output = PlainConv2d(input, weight, bias, stride, padding, {1, 1}, 1);
    return output.is_view() ? output.clone() : output;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const at::Tensor weight = ctx->get_saved_variables()[0];
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> size = ctx->saved_data["size"].toIntVector();
    const at::Tensor& grad = grad_outputs[0];
    at::Tensor grad_input;
    if (at::GradMode::is_enabled()) {
      grad_input = at::conv_transpose2d(grad, weight, {}, stride, padding,
                                        OutputPadding(size, grad, stride, padding, weight.size(2), weight.size(3)));
    } else {
      const ConvShape shape = ShapeOf(size, weight.sizes(), stride, padding);
      const at::Tensor grad_out = grad.contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor weight_t = weight.permute({2, 3, 1, 0}).contiguous();
      grad_input = at::empty(size, grad.options().memory_format(at::MemoryFormat::ChannelsLast));
      const float* go = grad_out.data_ptr<float>();
      const float* wt = weight_t.data_ptr<float>();
      float* gi = grad_input.data_ptr<float>();
      at::parallel_for(0, shape.batch, 1, [&](int64_t begin, int64_t end) {
        ConvInputGradient(shape, go, wt, gi, begin, end);
      });
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// relu then 2x2, stride-2 max pooling, as one op on a CPU while gradients are recorded (see
// RewriteReluMaxPools). Saves its input and output; the backward recomputes which position took each
// window and writes the whole input gradient in one pass (ATen's writes zeros, scatters, then masks).
class ReluMaxPoolFunction : public torch::autograd::Function<ReluMaxPoolFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input) {
    const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    at::Tensor out = at::empty({n, c, h / 2, w / 2}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    const float* in = x.data_ptr<float>();
    float* o = out.data_ptr<float>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) { ReluMaxPool2x2(in, h, w, c, o, begin, end); });
    ctx->save_for_backward({x, out});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& out = saved[1];
    if (at::GradMode::is_enabled()) {  // a recorded backward: ATen's ops, which autograd can differentiate
      at::Tensor relu = at::relu(x);
      auto [pooled, indices] = at::max_pool2d_with_indices(relu, {2, 2}, {2, 2});
      at::Tensor grad = at::max_pool2d_with_indices_backward(grad_outputs[0], relu, {2, 2}, {2, 2}, {0, 0}, {1, 1},
                                                             false, indices);
      return {at::threshold_backward(grad, relu, 0)};
    }
    const at::Tensor grad_out = grad_outputs[0].contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    at::Tensor grad_in = at::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    const float* in = x.data_ptr<float>();
    const float* o = out.data_ptr<float>();
    const float* go = grad_out.data_ptr<float>();
    float* gi = grad_in.data_ptr<float>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      ReluMaxPool2x2Backward(in, o, go, h, w, c, gi, begin, end);
    });
    return {grad_in};
  }
};

at::Tensor ReluMaxPool2x2Op(const at::Tensor& input) {
  if (!at::GradMode::is_enabled() || !input.device().is_cpu() || input.scalar_type() != at::kFloat ||
      input.dim() != 4 || input.size(2) < 2 || input.size(3) < 2) {
    return at::max_pool2d(at::relu(input), {2, 2}, {2, 2});
  }
  return ReluMaxPoolFunction::apply(input);
}

// The convolution of channel select[i] alone for image i, as a grouped convolution (one group per image):
// any device, differentiable in everything.
at::Tensor GroupedSelectedConv(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               const at::Tensor& select) {
  const int64_t n = input.size(0);
  const at::Tensor index = select.to(weight.device(), at::kLong);
  const at::Tensor weights = weight.index_select(0, index);
  c10::optional<at::Tensor> biases;
  if (bias && bias->defined()) biases = bias->index_select(0, index);
  const at::Tensor out = at::conv2d(input.reshape({1, n * input.size(1), input.size(2), input.size(3)}), weights, biases,
                                    stride, padding, dilation, n);
  return out.reshape({n, 1, out.size(2), out.size(3)});
}

// The same on a CPU with frozen weights, by the loops of src/model/cpu_loops.h: one output channel of
// 3x3 convolutions costs 1/64 of the bundled model's conv3 forward and backward. A recorded backward
// (double backward) runs as a grouped transposed convolution instead.
class SelectedConvFunction : public torch::autograd::Function<SelectedConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            const at::Tensor& select) {
    const ConvShape shape = ShapeOf(input.sizes(), weight.sizes(), stride, padding);  // out_channels unused
    const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor index = select.to(at::kLong);
    const at::Tensor weights = weight.index_select(0, index).permute({0, 2, 3, 1}).contiguous();  // [N, kh, kw, C]
    at::Tensor biases;
    if (bias && bias->defined()) biases = bias->index_select(0, index).contiguous();
    at::Tensor out = at::empty({shape.batch, 1, shape.out_height, shape.out_width}, x.options());
    const float* in = x.data_ptr<float>();
    const float* w = weights.data_ptr<float>();
    const float* b = biases.defined() ? biases.data_ptr<float>() : nullptr;
    float* o = out.data_ptr<float>();
    at::parallel_for(0, shape.batch, 1, [&](int64_t begin, int64_t end) { SelectedConv(shape, in, w, b, o, begin, end); });
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["size"] = input.sizes().vec();
    ctx->save_for_backward({weights});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const at::Tensor weights = ctx->get_saved_variables()[0];  // [N, kh, kw, C]
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> size = ctx->saved_data["size"].toIntVector();
    const at::Tensor& grad = grad_outputs[0];  // [N, 1, Ho, Wo]
    at::Tensor grad_input;
    if (at::GradMode::is_enabled()) {
      const int64_t n = size[0];
      grad_input = at::conv_transpose2d(grad.reshape({1, n, grad.size(2), grad.size(3)}), weights.permute({0, 3, 1, 2}), {},
                                        stride, padding,
                                        OutputPadding(size, grad, stride, padding, weights.size(1), weights.size(2)), n)
                       .reshape(size);
    } else {
      // weights [N, kh, kw, C]: the shape's out_channels are unused.
      const ConvShape shape = ShapeOf(size, {1, size[1], weights.size(1), weights.size(2)}, stride, padding);
      const at::Tensor grad_out = grad.contiguous();
      grad_input = at::empty(size, grad.options().memory_format(at::MemoryFormat::ChannelsLast));
      const float* go = grad_out.data_ptr<float>();
      const float* w = weights.data_ptr<float>();
      float* gi = grad_input.data_ptr<float>();
      at::parallel_for(0, shape.batch, 1, [&](int64_t begin, int64_t end) {
        SelectedConvInputGradient(shape, go, w, gi, begin, end);
      });
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor SelectedConv2dOp(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                            const at::Tensor& select) {
  TORCH_CHECK(select.dim() == 1 && select.size(0) == input.size(0),
              "cnnviz::conv2d_select: one channel per image is needed, got ", select.sizes(), " for a batch of ",
              input.size(0));
  const bool frozen = !weight.requires_grad() && !(bias && bias->defined() && bias->requires_grad());
  if (input.device().is_cpu() && input.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
      input.dim() == 4 && frozen && stride.size() == 2 && padding.size() == 2 && dilation.size() == 2 &&
      dilation[0] == 1 && dilation[1] == 1 && weight.size(1) == input.size(1)) {
    return SelectedConvFunction::apply(input, weight, bias, stride, padding, select);
  }
  return GroupedSelectedConv(input, weight, bias, stride, padding, dilation, select);
}

TORCH_LIBRARY(cnnviz, m) {
  m.def("relu_rule(Tensor x, int rule) -> Tensor", &ReluRule);
  m.def("clamp_rule(Tensor x, float low, float high, int rule) -> Tensor", &ClampRule);
  m.def("activation_rule(Tensor x, int kind, float a, float b, float c, int rule) -> Tensor", &ActivationRule);
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, int groups) "
        "-> Tensor",
        &Conv2d);
  m.def("relu_max_pool2x2(Tensor x) -> Tensor", &ReluMaxPool2x2Op);
  m.def("conv2d_select(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "Tensor select) -> Tensor",
        &SelectedConv2dOp);
}

std::optional<double> ConstantDouble(jit::Value* value) {
  auto constant = jit::toIValue(value);
  if (!constant) return std::nullopt;
  if (constant->isDouble()) return constant->toDouble();
  if (constant->isInt()) return static_cast<double>(constant->toInt());
  return std::nullopt;
}

template <typename Visit>
void ForEachNode(jit::Block* block, const Visit& visit) {
  for (jit::Node* node : block->nodes()) {
    visit(node);
    for (jit::Block* sub : node->blocks()) ForEachNode(sub, visit);
  }
}

}  // namespace

at::Tensor Conv2d(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!at::GradMode::is_enabled()) return at::conv2d(input, weight, bias, stride, padding, dilation, groups);
  // Under CPU autocast (reduced precision, core/precision.h) the convolution runs in bfloat16 with
  // oneDNN's backward, unless the caller keeps the input layer float32 (AutocastGuard): this float32 loop
  // keeps the next layers float32 too (resnet18 to layer3, batch 4, forward+backward in eager PyTorch
  // with glibc keeping freed memory: 94 ms with conv1 in bfloat16, 113 ms with conv1 to maxpool in
  // float32). Running this loop and casting its output to bfloat16 changed nothing measurable.
  if ((!at::autocast::is_cpu_enabled() || Float32InputLayer()) &&
      FewChannelShape(input, weight, bias, stride, padding, dilation, groups)) {
    return FewChannelConvFunction::apply(input, weight, bias, stride, padding);
  }
  return PlainConv2d(input, weight, bias, stride, padding, dilation, groups);
}

namespace {

// Activations the rules leave with their plain gradient, as counted for RuleCoverage.
const std::set<std::string>& PlainActivations() {
  static const std::set<std::string> kinds = {
      "aten::threshold", "aten::prelu", "aten::rrelu", "aten::sigmoid", "aten::tanh", "aten::softplus",
      "aten::hardtanh", "aten::relu6", "aten::gelu", "aten::softsign", "aten::glu", "aten::hardshrink",
      "aten::softshrink", "aten::log_sigmoid", "aten::clamp"};
  return kinds;
}

std::string ShortName(std::string kind) {
  if (!kind.empty() && kind.back() == '_') kind.pop_back();
  return kind.rfind("aten::", 0) == 0 ? kind.substr(6) : kind;
}

}  // namespace

const char* ActivationName(int64_t kind) {
  switch (kind) {
    case kSilu: return "silu";
    case kGelu: return "gelu";
    case kGeluTanh: return "gelu(tanh)";
    case kHardswish: return "hardswish";
    case kHardsigmoid: return "hardsigmoid";
    case kElu: return "elu";
    case kLeakyRelu: return "leaky_relu";
    case kMish: return "mish";
    default: return "?";
  }
}

double OnSlope(int64_t kind, double a, double b) {
  (void)a;
  if (kind == kHardsigmoid) return 1.0 / 6.0;
  if (kind == kElu) return b;  // elu's scale (selu's 1.0507)
  return 1.0;
}

void RewriteRelus(jit::Graph& graph, jit::Value* rule) {
  static const c10::Symbol kReluRule = c10::Symbol::fromQualString("cnnviz::relu_rule");
  static const c10::Symbol kClampRule = c10::Symbol::fromQualString("cnnviz::clamp_rule");
  static const c10::Symbol kActivationRule = c10::Symbol::fromQualString("cnnviz::activation_rule");
  static const std::map<std::string, int64_t> kSimple = {
      {"aten::silu", kSilu}, {"aten::hardswish", kHardswish}, {"aten::hardsigmoid", kHardsigmoid}, {"aten::mish", kMish}};
  std::vector<jit::Node*> nodes;
  ForEachNode(graph.block(), [&](jit::Node* node) { nodes.push_back(node); });
  for (jit::Node* node : nodes) {
    std::string kind = node->kind().toQualString();
    const bool in_place = !kind.empty() && kind.back() == '_';
    const std::string base = in_place ? kind.substr(0, kind.size() - 1) : kind;
    std::vector<jit::NamedValue> args;
    c10::Symbol replacement;
    jit::WithInsertPoint guard(node);
    // (kind, a, b, c) of cnnviz::activation_rule, when the node is one it covers.
    std::optional<std::array<double, 4>> activation;
    if (base == "aten::relu") {
      replacement = kReluRule;
      args = {node->input(0), rule};
    } else if (base == "aten::relu6" || base == "aten::hardtanh") {
      const bool relu6 = base == "aten::relu6";
      auto low = relu6 ? std::optional<double>(0.0) : ConstantDouble(node->input(1));
      auto high = relu6 ? std::optional<double>(6.0) : ConstantDouble(node->input(2));
      if (!low || !high || *low != 0.0) continue;  // counted as a plain gradient by CountRuleCoverage
      replacement = kClampRule;
      args = {node->input(0), graph.insertConstant(*low), graph.insertConstant(*high), rule};
    } else if (kSimple.count(base) && node->inputs().size() == 1) {
      activation = std::array<double, 4>{static_cast<double>(kSimple.at(base)), 0, 1, 1};
    } else if (base == "aten::gelu") {
      std::string approximate = "none";
      if (node->inputs().size() == 2) {
        const auto value = jit::toIValue(node->input(1));
        if (!value || !value->isString()) continue;
        approximate = value->toStringRef();
      }
      if (approximate != "none" && approximate != "tanh") continue;
      activation = std::array<double, 4>{static_cast<double>(approximate == "none" ? kGelu : kGeluTanh), 0, 1, 1};
    } else if (base == "aten::elu" && node->inputs().size() == 4) {
      const auto alpha = ConstantDouble(node->input(1)), scale = ConstantDouble(node->input(2)),
                 input_scale = ConstantDouble(node->input(3));
      if (!alpha || !scale || !input_scale) continue;
      activation = std::array<double, 4>{static_cast<double>(kElu), *alpha, *scale, *input_scale};
    } else if (base == "aten::selu" && node->inputs().size() == 1) {
      activation = std::array<double, 4>{static_cast<double>(kElu), 1.6732632423543772, 1.0507009873554805, 1.0};
    } else if (base == "aten::celu" && node->inputs().size() == 2) {
      const auto alpha = ConstantDouble(node->input(1));
      if (!alpha || *alpha == 0) continue;
      activation = std::array<double, 4>{static_cast<double>(kElu), *alpha, 1.0, 1.0 / *alpha};
    } else if (base == "aten::leaky_relu" && node->inputs().size() == 2) {
      const auto slope = ConstantDouble(node->input(1));
      if (!slope) continue;
      activation = std::array<double, 4>{static_cast<double>(kLeakyRelu), *slope, 1, 1};
    } else {
      continue;
    }
    if (activation) {
      replacement = kActivationRule;
      args = {node->input(0),
              graph.insertConstant(static_cast<int64_t>((*activation)[0])),
              graph.insertConstant((*activation)[1]),
              graph.insertConstant((*activation)[2]),
              graph.insertConstant((*activation)[3]),
              rule};
    }
    jit::Value* x = node->input(0);
    if (in_place && x->node()->owningBlock() != node->owningBlock()) continue;  // counted as plain
    jit::Value* y = graph.insert(replacement, args);
    if (in_place) x->replaceAllUsesAfterNodeWith(node, y);
    node->output()->replaceAllUsesWith(y);
    node->destroy();
  }
}

RuleCoverage CountRuleCoverage(jit::Graph& graph) {
  static const c10::Symbol kReluRule = c10::Symbol::fromQualString("cnnviz::relu_rule");
  static const c10::Symbol kClampRule = c10::Symbol::fromQualString("cnnviz::clamp_rule");
  static const c10::Symbol kActivationRule = c10::Symbol::fromQualString("cnnviz::activation_rule");
  RuleCoverage coverage;
  ForEachNode(graph.block(), [&](jit::Node* node) {
    if (node->kind() == kReluRule) {
      ++coverage.covered["relu"];
    } else if (node->kind() == kClampRule) {
      const auto high = ConstantDouble(node->input(2));
      ++coverage.covered[high && *high == 6.0 ? "relu6" : "hardtanh"];
    } else if (node->kind() == kActivationRule) {
      const auto kind = jit::toIValue(node->input(1));
      ++coverage.covered[kind && kind->isInt() ? ActivationName(kind->toInt()) : "?"];
    } else {
      std::string kind = node->kind().toQualString();
      if (!kind.empty() && kind.back() == '_') kind.pop_back();
      if (PlainActivations().count(kind) || kind == "aten::silu" || kind == "aten::hardswish" ||
          kind == "aten::hardsigmoid" || kind == "aten::mish" || kind == "aten::elu" || kind == "aten::selu" ||
          kind == "aten::celu" || kind == "aten::leaky_relu" || kind == "aten::relu") {
        ++coverage.plain_gradient[ShortName(kind)];
      }
    }
  });
  return coverage;
}

int RewriteSmallBatchConvolutions(jit::Graph& graph) {
  static const c10::Symbol kConv2d = c10::Symbol::fromQualString("cnnviz::conv2d");
  std::vector<jit::Node*> nodes;
  ForEachNode(graph.block(), [&](jit::Node* node) { nodes.push_back(node); });
  int replaced = 0;
  for (jit::Node* node : nodes) {
    const std::string kind = node->kind().toQualString();
    std::vector<jit::NamedValue> args;
    if (kind == "aten::conv2d" && node->inputs().size() == 7 &&
        node->input(4)->type()->isSubtypeOf(*c10::ListType::ofInts())) {
      for (size_t i = 0; i < 7; ++i) args.emplace_back(node->input(i));
    } else if (kind == "aten::_convolution" && node->inputs().size() >= 9) {
      // (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, ...)
      auto transposed = jit::toIValue(node->input(6));
      auto stride = jit::toIValue(node->input(3));
      if (!transposed || !transposed->isBool() || transposed->toBool()) continue;
      if (!stride || !stride->isIntList() || stride->toIntList().size() != 2) continue;  // 2-D only
      for (size_t i : {0, 1, 2, 3, 4, 5, 8}) args.emplace_back(node->input(i));
    } else {
      continue;
    }
    jit::WithInsertPoint guard(node);
    jit::Value* y = graph.insert(kConv2d, args);
    node->output()->replaceAllUsesWith(y);
    node->destroy();
    ++replaced;
  }
  return replaced;
}

int RewriteReluMaxPools(jit::Graph& graph) {
  static const c10::Symbol kReluMaxPool = c10::Symbol::fromQualString("cnnviz::relu_max_pool2x2");
  auto int_list = [](jit::Value* value) -> std::optional<std::vector<int64_t>> {
    const auto constant = jit::toIValue(value);
    if (!constant || !constant->isIntList()) return std::nullopt;
    return constant->toIntVector();
  };
  const std::vector<int64_t> two{2, 2};
  std::vector<jit::Node*> pools;
  for (jit::Node* node : graph.nodes()) {  // the top-level block only
    if (node->kind() != c10::aten::max_pool2d || node->inputs().size() != 6) continue;
    const auto kernel = int_list(node->input(1)), stride = int_list(node->input(2));
    const auto ceil = jit::toIValue(node->input(5));
    if (kernel != two || !stride || !(stride->empty() || *stride == two) ||
        int_list(node->input(3)) != std::vector<int64_t>{0, 0} || int_list(node->input(4)) != std::vector<int64_t>{1, 1} ||
        !ceil || !ceil->isBool() || ceil->toBool()) {
      continue;
    }
    jit::Node* relu = node->input(0)->node();
    const bool in_place = relu->kind() == c10::aten::relu_;
    if (relu->kind() != c10::aten::relu && !in_place) continue;
    if (relu->owningBlock() != node->owningBlock() || relu->output()->uses().size() != 1) continue;
    // relu_ changes its input: only when nothing else reads that input.
    if (in_place && relu->input(0)->uses().size() != 1) continue;
    pools.push_back(node);
  }
  for (jit::Node* node : pools) {
    jit::Node* relu = node->input(0)->node();
    jit::WithInsertPoint guard(node);
    node->output()->replaceAllUsesWith(graph.insert(kReluMaxPool, {relu->input(0)}));
    node->destroy();
    relu->destroy();
  }
  return static_cast<int>(pools.size());
}

bool RewriteSelectedChannels(jit::Graph& graph, jit::Value* select) {
  static const c10::Symbol kConv2d = c10::Symbol::fromQualString("cnnviz::conv2d");
  static const c10::Symbol kSelected = c10::Symbol::fromQualString("cnnviz::conv2d_select");
  if (graph.outputs().size() != 1) return false;
  jit::Node* tuple = graph.outputs()[0]->node();
  if (tuple->kind() != c10::prim::TupleConstruct || tuple->inputs().size() != 1) return false;
  // From the returned value back through its clone and ReLUs to the convolution; every value on the way
  // read by the next node alone (a relu_'s input and output are the same tensor).
  jit::Value* value = tuple->input(0);
  if (value->uses().size() != 1) return false;
  if (value->node()->kind() == c10::aten::clone) value = value->node()->input(0);
  while (value->uses().size() == 1 &&
         (value->node()->kind() == c10::aten::relu || value->node()->kind() == c10::aten::relu_)) {
    value = value->node()->input(0);
  }
  jit::Node* conv = value->node();
  if (value->uses().size() != 1 || conv->kind() != kConv2d || conv->inputs().size() != 7) return false;
  const auto groups = jit::toIValue(conv->input(6));
  if (!groups || !groups->isInt() || groups->toInt() != 1) return false;
  jit::WithInsertPoint guard(conv);
  jit::Value* selected = graph.insert(kSelected, {conv->input(0), conv->input(1), conv->input(2), conv->input(3),
                                                  conv->input(4), conv->input(5), select});
  conv->output()->replaceAllUsesWith(selected);
  conv->destroy();
  return true;
}

}  // namespace cnnviz::detail
