#include "src/model/tap_graph.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/peephole.h>

#include <algorithm>
#include <map>
#include <regex>
#include <unordered_map>
#include <unordered_set>

namespace cnnviz::detail {
namespace jit = torch::jit;

namespace {

jit::Value* SelfOf(jit::Graph& graph) { return graph.inputs().at(0); }

// Module path of a prim::GetAttr chain rooted at self ("" for self itself).
std::string PathOf(jit::Value* value, jit::Value* self) {
  std::vector<std::string> parts;
  while (value != self) {
    jit::Node* node = value->node();
    if (node->kind() != c10::prim::GetAttr) return "<unresolved>";
    parts.push_back(node->s(c10::attr::name));
    value = node->input(0);
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) path += (path.empty() ? "" : ".") + *it;
  return path;
}

c10::IValue ResolveFrom(jit::Value* value, jit::Value* self, const c10::IValue& root) {
  if (value == self) return root;
  jit::Node* node = value->node();
  if (node->kind() != c10::prim::GetAttr) return c10::IValue();
  c10::IValue parent = ResolveFrom(node->input(0), self, root);
  if (!parent.isObject()) return c10::IValue();
  const auto& object = parent.toObjectRef();
  const std::string& name = node->s(c10::attr::name);
  if (!object.type()->hasAttribute(name)) return c10::IValue();
  return object.getAttr(name);
}

std::string ShortTypeName(const c10::IValue& value) {
  if (!value.isObject()) return value.tagKind();
  auto qualified = value.toObjectRef().type()->name();
  return qualified ? qualified->name() : "Module";
}

// "forward", "forward1" (an extra forward method), or "forward__0": TorchScript's name for one overload of
// an @torch.jit._overload_method forward (densenet's _DenseLayer takes a Tensor or a list of them).
bool IsForwardName(const std::string& name) {
  static const std::regex kForward(R"(forward(\d*|__\d+))");
  return std::regex_match(name, kForward);
}

bool IsTensor(const jit::Value* value) { return value->type()->isSubtypeOf(*c10::TensorType::get()); }

bool Foldable(const c10::IValue& value) {
  if (value.isBool() || value.isInt() || value.isDouble() || value.isString() || value.isNone()) return true;
  if (value.isIntList() || value.isDoubleList() || value.isBoolList()) return true;
  if (value.isTuple()) {
    for (const auto& element : value.toTupleRef().elements()) {
      if (!Foldable(element)) return false;
    }
    return true;
  }
  return false;
}

template <typename Visit>
void ForEachNode(jit::Block* block, const Visit& visit) {
  for (jit::Node* node : block->nodes()) {
    visit(node);
    for (jit::Block* sub : node->blocks()) ForEachNode(sub, visit);
  }
}

// Replaces reads of primitive module attributes (training flags, strides, padding modes) by constants,
// so that constant propagation can remove the branches they guard and expose the calls inside.
void FoldAttributes(jit::Graph& graph, const c10::IValue& root) {
  std::unordered_set<std::string> mutated;
  ForEachNode(graph.block(), [&](jit::Node* node) {
    if (node->kind() == c10::prim::SetAttr) mutated.insert(node->s(c10::attr::name));
  });
  std::vector<jit::Node*> reads;
  ForEachNode(graph.block(), [&](jit::Node* node) {
    if (node->kind() == c10::prim::GetAttr && !mutated.count(node->s(c10::attr::name))) reads.push_back(node);
  });
  jit::Value* self = SelfOf(graph);
  for (jit::Node* node : reads) {
    c10::IValue value = ResolveFrom(node->output(), self, root);
    if (value.isObject() || value.isTensor() || !Foldable(value)) continue;
    if (value.isNone() && node->output()->type()->kind() != c10::TypeKind::NoneType) continue;
    jit::WithInsertPoint guard(node);
    auto constant = jit::tryInsertConstant(graph, value);
    if (!constant) continue;
    (*constant)->setType(node->output()->type());
    node->output()->replaceAllUsesWith(*constant);
    node->destroy();
  }
}

bool InTopBlock(const jit::Value* value, jit::Graph& graph) {
  return value->node()->owningBlock() == graph.block();
}

// Frozen models have no module structure left: tap the outputs of layer-like aten ops instead.
void AddOpLevelSites(TapGraph& result) {
  static const std::unordered_set<std::string> kLayerOps = {
      "aten::conv2d", "aten::_convolution", "aten::conv1d", "aten::conv3d", "aten::linear",
      "aten::addmm", "aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_",
      "aten::max_pool2d", "aten::avg_pool2d", "aten::adaptive_avg_pool2d", "aten::batch_norm",
      "aten::add", "aten::add_", "aten::cat", "aten::flatten"};
  std::map<std::string, int> counts;
  jit::Graph& graph = *result.graph;
  for (jit::Node* node : graph.nodes()) {
    const std::string kind = node->kind().toQualString();
    if (!kLayerOps.count(kind) || node->outputs().size() != 1 || !IsTensor(node->output())) continue;
    std::string op = node->kind().toUnqualString();
    if (!op.empty() && op.back() == '_') op.pop_back();
    TapSite site;
    site.name = op + "_" + std::to_string(counts[op]++);
    site.type = kind;
    site.output_index = graph.registerOutput(node->output());
    result.sites.push_back(site);
  }
}

}  // namespace

c10::IValue ResolveAttribute(jit::Value* value, const jit::Module& module) {
  return ResolveFrom(value, SelfOf(*value->owningGraph()), module._ivalue());
}

TapGraph BuildTapGraph(const jit::Module& module) {
  TapGraph result;
  result.graph = module.get_method("forward").graph()->copy();
  jit::Graph& graph = *result.graph;
  jit::Value* self = SelfOf(graph);
  const c10::IValue root = module._ivalue();
  std::map<std::string, int> calls_per_path;
  std::unordered_set<jit::Node*> unresolved;

  for (;;) {
    FoldAttributes(graph, root);
    jit::ConstantPropagation(result.graph);
    std::vector<jit::Node*> calls;
    ForEachNode(graph.block(), [&](jit::Node* node) {
      if (node->kind() == c10::prim::CallMethod && !unresolved.count(node)) calls.push_back(node);
    });
    if (calls.empty()) break;
    for (jit::Node* call : calls) {
      jit::Value* target = call->input(0);
      c10::IValue object = ResolveFrom(target, self, root);
      const std::string method = call->s(c10::attr::name);
      if (!object.isObject()) {
        unresolved.insert(call);
        result.warnings.push_back("a call of '" + method + "' on an unresolvable module is not inlined");
        continue;
      }
      const std::string path = PathOf(target, self);
      const bool in_control_flow = call->owningBlock() != graph.block();
      auto& function = jit::toGraphFunction(object.toObjectRef().type()->getMethod(method));
      std::vector<jit::Value*> outputs = jit::inlineCallTo(call, &function, /*use_graph=*/false);
      if (path.empty() || !IsForwardName(method) || outputs.size() != 1 || !IsTensor(outputs[0])) continue;
      TapSite site;
      const int index = calls_per_path[path]++;
      site.name = index == 0 ? path : path + "#" + std::to_string(index);
      site.type = ShortTypeName(object);
      if (in_control_flow || !InTopBlock(outputs[0], graph)) {
        site.tappable = false;
        site.note = "called inside data-dependent control flow (if/loop): cannot be tapped";
        result.warnings.push_back("layer '" + site.name + "' " + site.note);
      } else {
        site.output_index = graph.registerOutput(outputs[0]);
      }
      result.sites.push_back(site);
    }
  }
  jit::Inline(graph);
  // Python-side warnings (googlenet's "always returns a tuple") would print on every run of every view.
  std::vector<jit::Node*> warnings;
  ForEachNode(graph.block(), [&](jit::Node* node) {
    if (node->kind() == c10::aten::warn) warnings.push_back(node);
  });
  for (jit::Node* node : warnings) node->destroy();
  // Functions inlined last (F.max_pool2d's `if stride is None`) still test lists against None:
  // peephole folds those checks, so strides and kernels become constants the receptive-field walk reads.
  jit::PeepholeOptimize(result.graph, /*disable_shape_peepholes=*/true);
  jit::ConstantPropagation(result.graph);

  if (result.sites.empty()) {
    result.op_level = true;
    result.warnings.push_back(
        "the model has no submodule calls (a frozen model?): only op-level taps such as conv2d_0 are "
        "available");
    AddOpLevelSites(result);
  }

  // Forward order: by the position of the node that produces each site's value; the inner of two calls
  // returning the same value (a container and its last child) first.
  std::unordered_map<const jit::Node*, size_t> position;
  size_t counter = 0;
  for (jit::Node* node : graph.nodes()) position[node] = ++counter;
  auto rank = [&](const TapSite& site) -> std::pair<size_t, size_t> {
    if (!site.tappable) return {SIZE_MAX, 0};
    const jit::Node* producer = graph.outputs()[site.output_index]->node();
    auto it = position.find(producer);
    const size_t depth = std::count(site.name.begin(), site.name.end(), '.');
    return {it == position.end() ? 0 : it->second, SIZE_MAX - depth};
  };
  std::stable_sort(result.sites.begin(), result.sites.end(),
                   [&](const TapSite& a, const TapSite& b) { return rank(a) < rank(b); });
  return result;
}

}  // namespace cnnviz::detail
