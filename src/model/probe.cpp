#include "cnnviz/model/probe.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/alias_analysis.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/frozen_conv_add_relu_fusion.h>
#include <torch/csrc/jit/passes/frozen_graph_optimizations.h>
#include <torch/csrc/jit/passes/frozen_ops_to_mkldnn.h>
#include <torch/csrc/jit/passes/remove_exceptions.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <set>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "src/model/ivalue_util.h"
#include "src/model/receptive_field.h"
#include "src/model/relu_rules.h"
#include "src/model/tap_graph.h"

namespace cnnviz {
namespace jit = torch::jit;

std::string ToString(BackwardRule rule) {
  switch (rule) {
    case BackwardRule::kDeconvNet:
      return "deconvnet";
    case BackwardRule::kGuided:
      return "guided";
    case BackwardRule::kRedirected:
      return "redirected";
    default:
      return "gradient";
  }
}

BackwardRule ParseBackwardRule(const std::string& text) {
  if (text == "gradient") return BackwardRule::kGradient;
  if (text == "deconvnet") return BackwardRule::kDeconvNet;
  if (text == "guided") return BackwardRule::kGuided;
  throw UsageError("unknown backward rule '" + text + "' (expected gradient, deconvnet or guided)");
}

namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// TorchScript interpreter errors put the real cause on the last non-empty line.
std::string LastMeaningfulLine(const std::string& message) {
  std::string best;
  std::istringstream lines(message);
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t") != std::string::npos) best = line;
  }
  return FirstLine(best.substr(best.find_first_not_of(" \t") == std::string::npos ? 0 : best.find_first_not_of(" \t")));
}

bool IsTooSmallMessage(const std::string& message) {
  for (const char* marker : {"too small", "Kernel size can't be greater", "non-positive", "output size"}) {
    if (message.find(marker) != std::string::npos) return true;
  }
  return false;
}

constexpr uint64_t kChannelWeightSeed = 20191;

// Bounding box [y0, x0, y1, x1) of the input gradient of unit (i, j) of `layer` (channels weighted by
// fixed random numbers) over a batch of random inputs; nullopt when the gradient is zero everywhere.
std::optional<std::array<int64_t, 4>> GradientSupport(const Probe& probe, const LayerInfo& layer,
                                                      const at::Tensor& inputs, int64_t i, int64_t j) {
  at::AutoGradMode grad(true);
  at::Tensor x = inputs.clone().requires_grad_(true);
  ViewSpec view;
  view.taps = {layer.name};
  const at::Tensor tap = probe.Run(view, x).taps[0];
  const int64_t rows = layer.channel_axis == 1 ? 2 : 1;  // channels-last maps hold rows on axis 1
  // Channels weighted by fixed random numbers, not summed: a plain sum over a layer norm's output is
  // constant, and its gradient zero.
  const at::Tensor unit = tap.select(rows + 1, j).select(rows, i);  // [N, C]
  auto generator = at::make_generator<at::CPUGeneratorImpl>(kChannelWeightSeed);
  const at::Tensor weights = at::randn({unit.size(1)}, generator).to(unit.device());
  (unit * weights).sum().backward();
  const at::Tensor mask = x.grad().abs().sum(at::IntArrayRef{0, 1}).cpu() > 0;
  const at::Tensor hit_rows = mask.any(1).nonzero().flatten();
  const at::Tensor hit_cols = mask.any(0).nonzero().flatten();
  if (hit_rows.numel() == 0) return std::nullopt;
  return std::array<int64_t, 4>{hit_rows.min().item<int64_t>(), hit_cols.min().item<int64_t>(),
                                hit_rows.max().item<int64_t>() + 1, hit_cols.max().item<int64_t>() + 1};
}

// Replaces the guessed (global) field of every spatial layer behind an op the walk does not model by a
// measurement: the gradient support of the centre unit, and of its diagonal neighbour for the stride.
// Returns warnings for layers that could not be measured.
std::vector<std::string> MeasureUnmodelledFields(const Probe& probe, std::vector<LayerInfo>& layers,
                                                 const InputSpec& spec, const at::Device& device) {
  constexpr uint64_t kSeed = 20190;
  constexpr int64_t kInputs = 4;  // random inputs united: ReLUs and max pooling hide a part of each
  std::vector<std::string> warnings;
  at::Tensor inputs;
  for (LayerInfo& layer : layers) {
    ReceptiveField& field = layer.receptive_field;
    if (!layer.tappable || !field.global || field.unmodelled_op.empty() || layer.shape.size() != 4) continue;
    const int64_t rows_axis = layer.channel_axis == 1 ? 2 : 1;
    const int64_t rows = layer.shape[rows_axis], cols = layer.shape[rows_axis + 1];
    if (rows * cols <= 1) continue;
    if (!inputs.defined()) {
      auto generator = at::make_generator<at::CPUGeneratorImpl>(kSeed);
      inputs = at::randn({kInputs, spec.channels, spec.height, spec.width}, generator).to(device);
    }
    try {
      const int64_t i = rows / 2, j = cols / 2;
      const auto box = GradientSupport(probe, layer, inputs, i, j);
      if (!box) throw std::runtime_error("the input gradient of its centre unit is zero");
      std::optional<std::array<int64_t, 4>> next;
      if (i + 1 < rows && j + 1 < cols) next = GradientSupport(probe, layer, inputs, i + 1, j + 1);
      const int64_t image[2] = {spec.height, spec.width}, extent[2] = {rows, cols}, index[2] = {i, j};
      bool whole = true;
      for (int d = 0; d < 2; ++d) {
        const int64_t low = (*box)[d], high = (*box)[d + 2];
        int64_t stride = std::max<int64_t>(1, (image[d] + extent[d] / 2) / extent[d]);
        if (next && low > 0 && (*next)[d] > 0) {
          stride = std::max<int64_t>(1, (*next)[d] - low);
        } else if (next && high < image[d] && (*next)[d + 2] < image[d]) {
          stride = std::max<int64_t>(1, (*next)[d + 2] - high);
        }
        field.size[d] = high - low;
        field.stride[d] = stride;
        field.offset[d] = static_cast<double>(low + high - 1) / 2.0 - static_cast<double>(index[d] * stride);
        whole = whole && low == 0 && high == image[d];
      }
      field.global = whole;
      field.measured = true;
    } catch (const std::exception& e) {
      const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
      warnings.push_back("the receptive field of '" + layer.name + "' (behind " + field.unmodelled_op +
                         ", which cnnviz does not model) could not be measured: " +
                         (torch_error ? torch_error->what_without_backtrace() : e.what()) + "; reported as global");
    }
  }
  return warnings;
}

}  // namespace

struct Probe::Impl {
  struct View {
    std::shared_ptr<jit::Graph> graph;
    std::unique_ptr<jit::GraphFunction> function;
    bool rules = false;
    // The view as a method of a frozen copy of the module, when freezing worked (see Freeze).
    std::unique_ptr<jit::Module> frozen;
    std::string method;
    // ViewSpec::select_channels was asked for and the graph allowed it: the graph takes `select` last.
    bool selected = false;
    // Rule views: the activations the rule covers and those left with their plain gradient.
    RuleCoverage coverage;
  };

  detail::TapGraph tap_graph;
  std::vector<LayerInfo> layers;
  std::unordered_map<std::string, size_t> index;  // name and alias -> position in layers
  std::vector<std::string> warnings;
  mutable std::mutex mutex;
  // What a compiled view depends on: a ViewSpec with its taps resolved to layers (an alias and its path
  // share a view) and the rule reduced to "any rule" (the rule is an input of the view).
  struct ViewKey {
    std::vector<size_t> sites;
    bool output, rules, inference, channels_last, select, tap_gradients;
    // Inference views only: the reduced-precision dtype autocast runs the model's device at while the view
    // is frozen (c10::ScalarType), or -1 for none. Freezing bakes autocast's state into the graph (its
    // casts become nodes), so one view frozen under bf16 ran bf16 when called in fp32 later (and the other
    // way round ran autocast's casts op by op). Gradient views are not frozen and follow autocast's state
    // at each call. Measured and left out: casting the frozen weights to bf16 once, at freeze time, instead
    // of at every call (resnet18 to layer4, batch 16: 190 ms either way), and folding BatchNorm into the
    // convolutions of bf16 gradient views (resnet18 to layer3, batch 16, forward+backward: no change).
    int autocast;
    bool operator<(const ViewKey& other) const {
      return std::tie(sites, output, rules, inference, channels_last, select, tap_gradients, autocast) <
             std::tie(other.sites, other.output, other.rules, other.inference, other.channels_last, other.select,
                      other.tap_gradients, other.autocast);
    }
  };

  // The dtype autocast runs ops on `device` at on this thread, or -1 when it is off there.
  static int AutocastDtype(const c10::Device& device) {
    if (device.is_cpu()) {
      return at::autocast::is_cpu_enabled() ? static_cast<int>(at::autocast::get_autocast_cpu_dtype()) : -1;
    }
    if (device.is_cuda()) {
      return at::autocast::is_enabled() ? static_cast<int>(at::autocast::get_autocast_gpu_dtype()) : -1;
    }
    return -1;
  }

  mutable std::map<ViewKey, std::shared_ptr<View>> views;

  ViewKey KeyOf(const Probe& probe, const ViewSpec& spec) const {
    // Every field of ViewSpec is bound here: a new field breaks this line until the key accounts for it
    // (two different views sharing one cache entry would be a silent bug).
    const auto& [taps, output, rule, inference, channels_last, select_channels, tap_gradients] = spec;
    ViewKey key;
    for (const auto& tap : taps) key.sites.push_back(index.at(probe.Find(tap).name));
    key.output = output;
    key.rules = rule != BackwardRule::kGradient;
    key.inference = inference;
    key.channels_last = inference && channels_last;  // only inference views read it
    key.select = select_channels && key.sites.size() == 1 && !output && !key.rules && !inference;
    key.tap_gradients = tap_gradients && !inference;
    key.autocast = inference ? AutocastDtype(probe.model().device()) : -1;
    return key;
  }

  std::shared_ptr<View> GetView(const Probe& probe, const ViewSpec& spec) const {
    const ViewKey key = KeyOf(probe, spec);
    std::lock_guard<std::mutex> lock(mutex);
    auto& slot = views[key];
    if (!slot) {
      slot = Compile(key, probe.model().device().is_cpu());
      if (key.inference) {
        Freeze(*slot, probe.model().module(), /*mkldnn=*/!key.channels_last, probe.model().device().is_cpu());
      }
    }
    return slot;
  }

  // Compile clones every tap, against in-place ops that run after it (relu_, add_). In the frozen graph
  // alias analysis can tell where no later node writes to the tapped value or its clone; there the clone
  // only copies (a to_dense under MKLDNN layouts already makes a new tensor), and is dropped: 5 GB of
  // copies when dissecting all layers of the bundled model on 2,000 images. Clones of graph inputs stay.
  static void DropUnneededClones(const std::shared_ptr<jit::Graph>& graph) {
    jit::AliasDb aliases(graph);
    std::vector<jit::Node*> redundant;
    for (jit::Node* node : graph->nodes()) {
      if (node->kind() != c10::aten::clone || node->input(0)->node()->kind() == c10::prim::Param) continue;
      const jit::ValueSet values{node->input(0), node->output()};
      bool written = false;
      for (jit::Node* later = node->next(); later != graph->return_node() && !written; later = later->next()) {
        written = aliases.writesToAlias(later, values);
      }
      if (!written) redundant.push_back(node);
    }
    for (jit::Node* node : redundant) {
      node->output()->replaceAllUsesWith(node->input(0));
      node->destroy();
    }
  }

  // 2x2 max pooling with stride 2 (no padding, dilation or ceil mode) as the maximum of four strided
  // views: ATen's max_pool2d on a dense tensor also computes indices, three times slower (the bundled
  // model's first pool at batch 16, channels-last: 1.01 ms against 0.34 ms; the values are identical).
  // For dense frozen views of a CPU model; MKLDNN tensors have their own pooling, GPUs cuDNN's.
  static void RewriteHalvingMaxPools(jit::Graph& graph) {
    auto constant_list = [](jit::Value* value) -> c10::optional<std::vector<int64_t>> {
      const c10::optional<c10::IValue> constant = jit::toIValue(value);
      if (!constant || !constant->isIntList()) return c10::nullopt;
      return constant->toIntVector();
    };
    std::vector<jit::Node*> pools;
    for (jit::Node* node : graph.nodes()) {
      if (node->kind() != c10::aten::max_pool2d || node->inputs().size() != 6) continue;
      const auto kernel = constant_list(node->input(1)), stride = constant_list(node->input(2));
      const auto padding = constant_list(node->input(3)), dilation = constant_list(node->input(4));
      const c10::optional<c10::IValue> ceil = jit::toIValue(node->input(5));
      const std::vector<int64_t> two{2, 2};
      if (kernel == two && stride && (stride->empty() || *stride == two) && padding == std::vector<int64_t>{0, 0} &&
          dilation == std::vector<int64_t>{1, 1} && ceil && ceil->isBool() && !ceil->toBool()) {
        pools.push_back(node);
      }
    }
    for (jit::Node* node : pools) {
      jit::WithInsertPoint guard(node);
      jit::Value* x = node->input(0);
      auto even = [&](int64_t dim) {  // floor mode drops an odd last row or column
        jit::Value* size = graph.insert(c10::aten::size, {x, dim});
        return graph.insert(c10::aten::mul, {graph.insert(c10::aten::floordiv, {size, 2}), 2});
      };
      jit::Value* height = even(-2);
      jit::Value* width = even(-1);
      auto corner = [&](int64_t row, int64_t column) {
        jit::Value* rows = graph.insert(c10::aten::slice, {x, -2, row, height, 2});
        return graph.insert(c10::aten::slice, {rows, -1, column, width, 2});
      };
      jit::Value* top = graph.insert(c10::aten::maximum, {corner(0, 0), corner(0, 1)});
      jit::Value* bottom = graph.insert(c10::aten::maximum, {corner(1, 0), corner(1, 1)});
      node->output()->replaceAllUsesWith(graph.insert(c10::aten::maximum, {top, bottom}));
      node->destroy();
    }
  }

  // torch.jit.optimize_for_inference for an inference view: the view becomes a method of the module, the
  // module is frozen with that method preserved (weights and attributes become constants), and the
  // frozen graph gets freeze()'s optimizations (BatchNorm folded into the convolution before it, ...)
  // and optimize_for_inference's (conv-add-relu fusion, MKLDNN layouts unless the caller takes
  // channels-last taps, see ViewSpec::channels_last). Dissecting resnet18 layer4 runs its forward passes
  // 1.33x faster (batch 16, 224x224, 1 thread); values agree with the plain view to float rounding.
  // Views that take gradients stay plain: their output equals module.forward exactly.
  // Any failure (models freezing cannot handle) keeps the plain view; CNNVIZ_NO_FREEZE=1 turns it off.
  static void Freeze(View& view, jit::Module& module, bool mkldnn, bool cpu) {
    static std::atomic<int> counter{0};
    if (const char* off = std::getenv("CNNVIZ_NO_FREEZE"); off != nullptr && std::string(off) != "0") return;
    try {
      const std::string name = "cnnviz_view_" + std::to_string(counter++);
      auto type = module.type();
      if (!type->name() || type->findMethod("forward") == nullptr) return;
      jit::Function* function = module._ivalue()->compilation_unit()->create_function(
          c10::QualifiedName(*type->name(), name), view.graph->copy());
      type->addMethod(function);
      jit::Module frozen = jit::freeze_module(module, {name});
      std::shared_ptr<jit::Graph> graph = frozen.get_method(name).graph();
      jit::OptimizeFrozenGraph(graph, /*optimize_numerics=*/true);
      jit::FuseFrozenConvAddRelu(graph);  // what torch.jit.optimize_for_inference adds
      if (mkldnn) {
        jit::ConvertFrozenOpsToMKLDNN(graph);
      } else if (cpu) {  // measured on a CPU only
        RewriteHalvingMaxPools(*graph);
      }
      DropUnneededClones(graph);
      LogDebug("frozen view " + name + ":\n" + graph->toString());
      view.frozen = std::make_unique<jit::Module>(std::move(frozen));
      view.method = name;
    } catch (const std::exception& e) {
      LogDebug("view kept unfrozen: " + FirstLine(e.what()));
    }
  }

  std::shared_ptr<View> Compile(const ViewKey& key, bool cpu) const {
    const bool keep_output = key.output, rules = key.rules, inference = key.inference, select = key.select;
    auto view = std::make_shared<View>();
    view->rules = rules;
    std::shared_ptr<jit::Graph> graph = tap_graph.graph->copy();
    // Clone each tapped value right where it is produced: a later in-place op (relu_, add_) would
    // otherwise change what the caller receives. With tap_gradients the rest of the graph reads a second
    // clone *of the returned one*, so the returned tap is on the path (and in-place ops hit the copy).
    std::unordered_map<jit::Value*, jit::Value*> clones;
    std::vector<jit::Value*> outputs;
    for (size_t site : key.sites) {
      jit::Value* value = graph->outputs()[tap_graph.sites[site].output_index];
      auto it = clones.find(value);
      if (it == clones.end()) {
        jit::Node* producer = value->node();
        jit::Node* insert_before =
            producer->kind() == c10::prim::Param ? *graph->nodes().begin() : producer->next();
        jit::WithInsertPoint guard(insert_before);
        jit::Value* tap = graph->insert(c10::aten::clone, {value});
        it = clones.emplace(value, tap).first;
        if (key.tap_gradients) {
          jit::Value* onward = graph->insert(c10::aten::clone, {tap});
          value->replaceAllUsesAfterNodeWith(onward->node(), onward);
        }
      }
      outputs.push_back(it->second);
    }
    if (keep_output) outputs.push_back(graph->outputs()[0]);
    while (!graph->outputs().empty()) graph->eraseOutput(graph->outputs().size() - 1);
    graph->registerOutput(graph->insertNode(graph->createTuple(outputs))->output());
    if (rules) {
      jit::Value* rule = graph->addInput("rule");
      rule->setType(c10::IntType::get());
      detail::RewriteRelus(*graph, rule);
    }
    // Inference views are frozen instead, whose passes need the plain aten::conv2d (BatchNorm folding,
    // MKLDNN layouts, which also cover batch 1).
    if (!inference) detail::RewriteSmallBatchConvolutions(*graph);
    if (!keep_output) jit::EliminateExceptions(graph);
    jit::ConstantPropagation(graph);
    jit::EliminateDeadCode(graph);
    if (select) {
      jit::Value* channels = graph->addInput("select");
      channels->setType(c10::TensorType::get());
      view->selected = detail::RewriteSelectedChannels(*graph, channels);
      if (!view->selected) graph->eraseInput(graph->inputs().size() - 1);
    }
    if (rules) view->coverage = detail::CountRuleCoverage(*graph);
    if (!inference && !rules && cpu) detail::RewriteReluMaxPools(*graph);  // measured on a CPU only
    view->graph = graph;
    view->function = std::make_unique<jit::GraphFunction>("cnnviz_view", graph, nullptr);
    return view;
  }
};

Probe::Probe(std::shared_ptr<const Model> model) : model_(std::move(model)), impl_(std::make_unique<Impl>()) {
  const jit::Module& module = model_->module();
  impl_->tap_graph = detail::BuildTapGraph(module);
  impl_->warnings = impl_->tap_graph.warnings;
  const InputSpec& spec = model_->input_spec();
  auto fields = detail::ComputeReceptiveFields(*impl_->tap_graph.graph, module, spec.height, spec.width);
  std::map<std::string, std::vector<std::string>> aliases_of;
  for (const auto& [alias, path] : spec.aliases) aliases_of[path].push_back(alias);

  for (const auto& site : impl_->tap_graph.sites) {
    LayerInfo layer;
    layer.name = site.name;
    layer.type = site.type;
    layer.tappable = site.tappable;
    layer.note = site.note;
    if (auto it = aliases_of.find(site.name); it != aliases_of.end()) layer.alias = it->second.front();
    if (site.tappable) {
      auto field = fields.find(impl_->tap_graph.graph->outputs()[site.output_index]);
      if (field != fields.end()) {
        layer.receptive_field = field->second.field;
        if (field->second.field.global) layer.receptive_field.unmodelled_op = field->second.unmodelled;
      } else {
        layer.receptive_field = detail::SpatialField().field;
        layer.receptive_field.global = true;
        layer.receptive_field.size[0] = spec.height;
        layer.receptive_field.size[1] = spec.width;
      }
    }
    impl_->index[layer.name] = impl_->layers.size();
    impl_->layers.push_back(layer);
  }
  for (const auto& [alias, path] : spec.aliases) {
    auto it = impl_->index.find(path);
    if (it == impl_->index.end()) {
      impl_->warnings.push_back("sidecar alias '" + alias + "' names '" + path + "', which is not a layer");
      continue;
    }
    if (!impl_->index.count(alias)) impl_->index[alias] = it->second;
  }

  // One forward pass at the input size gives every layer's output shape and tells whether the input is
  // large enough for the network.
  ViewSpec all;
  for (const auto& layer : impl_->layers) {
    if (layer.tappable) all.taps.push_back(layer.name);
  }
  if (all.taps.empty()) return;
  at::Tensor input = at::zeros({1, spec.channels, spec.height, spec.width},
                               at::TensorOptions().dtype(at::kFloat).device(model_->device()));
  ProbeOutput out;
  try {
    at::NoGradGuard no_grad;
    out = Run(all, input);
  } catch (const std::exception& e) {
    // Scripted models raise torch::jit::JITException, whose first line is generic: search it all.
    const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
    const std::string message = torch_error ? torch_error->what_without_backtrace() : e.what();
    if (IsTooSmallMessage(message)) {
      throw ModelError("input size " + std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                       " is too small for model '" + model_->path() + "' (a layer's output would be empty); " +
                       "use a larger --input-size");
    }
    throw ModelError("model '" + model_->path() + "' fails on a " + std::to_string(spec.height) + "x" +
                     std::to_string(spec.width) + " input: " + LastMeaningfulLine(message));
  }
  std::vector<size_t> site_outputs;
  for (const auto& site : impl_->tap_graph.sites) site_outputs.push_back(site.output_index);
  size_t next = 0;
  for (auto& layer : impl_->layers) {
    if (!layer.tappable) continue;
    const at::Tensor& value = out.taps[next++];
    layer.shape = value.sizes().vec();
    const auto field = fields.find(impl_->tap_graph.graph->outputs()[site_outputs[&layer - impl_->layers.data()]]);
    if (field != fields.end()) {
      const int64_t axis = field->second.channel_axis();
      if (axis > 1 && axis < value.dim() && static_cast<size_t>(value.dim()) == field->second.layout.size()) {
        layer.channel_axis = axis;
      }
    }
    layer.units = value.dim() >= 2 ? value.size(layer.channel_axis) : (value.dim() == 1 ? value.size(0) : 1);
  }
  for (auto& warning : MeasureUnmodelledFields(*this, impl_->layers, spec, model_->device())) {
    impl_->warnings.push_back(std::move(warning));
  }
  for (const auto& warning : impl_->warnings) LogWarn(warning);
}

const LayerInfo& Probe::FindUnits(const std::string& name_or_alias) const {
  const LayerInfo& layer = Find(name_or_alias);
  if (layer.channel_axis != 1 && layer.shape.size() > 2) {
    throw UsageError("layer '" + name_or_alias + "' holds its " + std::to_string(layer.units) + " channels on axis " +
                     std::to_string(layer.channel_axis) +
                     " (channels-last, after a permute inside its block), and cnnviz reads units on axis 1; tap the "
                     "block's output or a layer before the permute instead (see `cnnviz layers`)");
  }
  return layer;
}

Probe::~Probe() = default;

const std::vector<LayerInfo>& Probe::layers() const { return impl_->layers; }
const std::vector<std::string>& Probe::warnings() const { return impl_->warnings; }

RuleCoverage Probe::Coverage(const ViewSpec& spec) const {
  ViewSpec ruled = spec;
  if (ruled.rule == BackwardRule::kGradient) ruled.rule = BackwardRule::kDeconvNet;  // the same view serves all rules
  ruled.inference = false;
  ruled.select_channels = false;
  return impl_->GetView(*this, ruled)->coverage;
}

int64_t RuleCoverage::covered_count() const {
  int64_t total = 0;
  for (const auto& [name, count] : covered) total += count;
  return total;
}

std::string RuleCoverage::Describe() const {
  auto list = [](const std::map<std::string, int64_t>& counts) {
    std::string text;
    for (const auto& [name, count] : counts) text += (text.empty() ? "" : ", ") + name + " x" + std::to_string(count);
    return text.empty() ? std::string("none") : text;
  };
  return "covers " + list(covered) + "; plain gradient: " + list(plain_gradient);
}
bool Probe::op_level() const { return impl_->tap_graph.op_level; }

const LayerInfo& Probe::Find(const std::string& name_or_alias) const {
  auto it = impl_->index.find(name_or_alias);
  if (it == impl_->index.end()) {
    std::vector<std::pair<size_t, std::string>> ranked;
    for (const auto& [name, position] : impl_->index) {
      size_t distance = EditDistance(name_or_alias, name);
      if (name.find(name_or_alias) != std::string::npos) distance = std::min<size_t>(distance, 1);
      ranked.emplace_back(distance, name);
    }
    std::sort(ranked.begin(), ranked.end());
    std::string message = "unknown layer '" + name_or_alias + "'";
    if (!ranked.empty()) {
      message += "; did you mean ";
      for (size_t i = 0; i < std::min<size_t>(3, ranked.size()); ++i) {
        message += (i ? ", " : "") + ("'" + ranked[i].second + "'");
      }
      message += "? (`cnnviz layers` lists them all)";
    }
    throw UsageError(message);
  }
  const LayerInfo& layer = impl_->layers[it->second];
  if (!layer.tappable) throw ModelError("layer '" + layer.name + "' " + layer.note);
  return layer;
}

bool Probe::CanSelectChannels(const ViewSpec& spec) const {
  ViewSpec selecting = spec;
  selecting.select_channels = true;
  return impl_->GetView(*this, selecting)->selected;
}

namespace {

// Sets the JIT graph executor's (thread-local) optimization flag while alive, and restores it.
class ExecutorOptimizeGuard {
 public:
  explicit ExecutorOptimizeGuard(bool optimize) : previous_(jit::getGraphExecutorOptimize()) {
    jit::setGraphExecutorOptimize(optimize);
  }
  ~ExecutorOptimizeGuard() { jit::setGraphExecutorOptimize(previous_); }
  ExecutorOptimizeGuard(const ExecutorOptimizeGuard&) = delete;
  ExecutorOptimizeGuard& operator=(const ExecutorOptimizeGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace

ProbeOutput Probe::Run(const ViewSpec& spec, const at::Tensor& given, const at::Tensor& select) const {
  auto view = impl_->GetView(*this, spec);
  if (spec.select_channels && !view->selected) {
    throw std::logic_error("Probe::Run: this view cannot select channels (see Probe::CanSelectChannels)");
  }
  const bool nhwc = spec.inference && spec.channels_last && given.dim() == 4 && given.device().is_cpu();
  const at::Tensor input = nhwc ? given.contiguous(at::MemoryFormat::ChannelsLast) : given;
  c10::IValue result;
  if (view->frozen) {
    std::vector<c10::IValue> stack{input};
    if (view->rules) stack.emplace_back(static_cast<int64_t>(spec.rule));
    result = view->frozen->get_method(view->method)(std::move(stack));
  } else {
    std::vector<c10::IValue> stack{model_->module()._ivalue(), input};
    if (view->rules) stack.emplace_back(static_cast<int64_t>(spec.rule));
    if (view->selected) stack.emplace_back(select);
    // On a CPU the view runs op by op, as eager PyTorch does, not through the profiling executor's
    // optimized plan: for graphs that record gradients that plan wraps the network in autodiff subgraphs
    // whose JIT-run backward costs more than autograd's own, and it re-specializes when a dtype changes
    // (autocast). resnet18 to layer3, batch 4 at 224 px, forward+backward, 1 thread, three alternating
    // runs of bench/probe_bench --precisions fp32,bf16: 170-183 -> 150-179 ms in fp32, 108-122 -> 96-116
    // ms under bf16 autocast. (Measured first without KeepFreedMemory, whose page faults the optimized
    // plan multiplied: 480 -> 336 and 401 -> 206 ms.) CPUs have no fuser to lose; GPUs keep the optimized
    // plan (its fusions are unmeasured here).
    const ExecutorOptimizeGuard eager(!input.device().is_cpu() && jit::getGraphExecutorOptimize());
    result = (*view->function)(std::move(stack));
  }
  const auto& elements = result.toTupleRef().elements();
  ProbeOutput out;
  for (size_t i = 0; i < spec.taps.size(); ++i) out.taps.push_back(elements[i].toTensor());
  if (spec.output) out.output = detail::FirstTensor(elements.back());
  return out;
}

size_t Probe::ViewSize(const ViewSpec& spec) const {
  auto view = impl_->GetView(*this, spec);
  size_t count = 0;
  for (auto it = view->graph->nodes().begin(); it != view->graph->nodes().end(); ++it) ++count;
  return count;
}

}  // namespace cnnviz
