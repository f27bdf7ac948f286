#include "src/model/relu_rules.h"

#include <torch/autograd.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <set>

namespace cnnviz::detail {
namespace {
namespace jit = torch::jit;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

constexpr int64_t kGradientRule = 0;
constexpr int64_t kDeconvNetRule = 1;
constexpr int64_t kGuidedRule = 2;

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
    at::Tensor pass = x > low;
    if (!std::isinf(high)) pass = pass.logical_and(x < high);
    at::Tensor grad_input;
    switch (rule) {
      case kDeconvNetRule:
        grad_input = at::relu(grad);
        break;
      case kGuidedRule:
        grad_input = at::relu(grad) * pass;
        break;
      default:
        grad_input = grad * pass;
        break;
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

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

// Composite (autograd records the ops inside): when gradients are recorded, batch-1 inputs on the slow
// path run doubled. Without gradients the plain convolution runs, so no-grad outputs stay bit-identical
// to module.forward.
at::Tensor Conv2d(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!at::GradMode::is_enabled() || !TakesSlowPath(input, weight, groups)) {
    return at::conv2d(input, weight, bias, stride, padding, dilation, groups);
  }
  return at::conv2d(input.expand({2, -1, -1, -1}), weight, bias, stride, padding, dilation, groups).narrow(0, 0, 1);
}

TORCH_LIBRARY(cnnviz, m) {
  m.def("relu_rule(Tensor x, int rule) -> Tensor", &ReluRule);
  m.def("clamp_rule(Tensor x, float low, float high, int rule) -> Tensor", &ClampRule);
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, int groups) "
        "-> Tensor",
        &Conv2d);
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

std::vector<std::string> RewriteRelus(jit::Graph& graph, jit::Value* rule) {
  static const std::set<std::string> kUntouched = {"aten::leaky_relu", "aten::leaky_relu_", "aten::threshold",
                                                   "aten::threshold_", "aten::prelu", "aten::clamp",
                                                   "aten::clamp_", "aten::rrelu", "aten::rrelu_"};
  static const c10::Symbol kReluRule = c10::Symbol::fromQualString("cnnviz::relu_rule");
  static const c10::Symbol kClampRule = c10::Symbol::fromQualString("cnnviz::clamp_rule");
  std::vector<jit::Node*> nodes;
  ForEachNode(graph.block(), [&](jit::Node* node) { nodes.push_back(node); });
  std::set<std::string> untouched;
  for (jit::Node* node : nodes) {
    const std::string kind = node->kind().toQualString();
    const bool in_place = !kind.empty() && kind.back() == '_';
    std::vector<jit::NamedValue> args;
    c10::Symbol replacement;
    if (kind == "aten::relu" || kind == "aten::relu_") {
      replacement = kReluRule;
      args = {node->input(0), rule};
    } else if (kind == "aten::relu6" || kind == "aten::relu6_" || kind == "aten::hardtanh" ||
               kind == "aten::hardtanh_") {
      const bool relu6 = kind.rfind("aten::relu6", 0) == 0;
      auto low = relu6 ? std::optional<double>(0.0) : ConstantDouble(node->input(1));
      auto high = relu6 ? std::optional<double>(6.0) : ConstantDouble(node->input(2));
      if (!low || !high || *low != 0.0) {
        untouched.insert(kind + " (lower bound not 0)");
        continue;
      }
      jit::WithInsertPoint guard(node);
      replacement = kClampRule;
      args = {node->input(0), graph.insertConstant(*low), graph.insertConstant(*high), rule};
    } else {
      if (kUntouched.count(kind)) untouched.insert(kind);
      continue;
    }
    jit::Value* x = node->input(0);
    if (in_place && x->node()->owningBlock() != node->owningBlock()) {
      untouched.insert(kind + " (in-place inside control flow)");
      continue;
    }
    jit::WithInsertPoint guard(node);
    jit::Value* y = graph.insert(replacement, args);
    if (in_place) x->replaceAllUsesAfterNodeWith(node, y);
    node->output()->replaceAllUsesWith(y);
    node->destroy();
  }
  std::vector<std::string> warnings;
  for (const auto& kind : untouched) {
    warnings.push_back("activation " + kind + " keeps its plain gradient under the DeconvNet/guided rules");
  }
  return warnings;
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

}  // namespace cnnviz::detail
