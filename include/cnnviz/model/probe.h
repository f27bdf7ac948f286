// The Probe: forward hooks for TorchScript models, without Python.
//
// TorchScript has no forward hooks in C++, so the Probe works on a rewritten *copy* of the model's
// forward graph (the module is never mutated):
//  - every submodule call is inlined and its output named by module path ("layer4.1.conv2"), giving
//    the layer catalogue (`layers()`), each with output shape and receptive field;
//  - a *view* returns the requested layers' outputs ("taps"), autograd intact, and drops everything
//    after the deepest one unless the final output is asked for (truncation);
//  - a view may replace every ReLU (relu, relu_, functional or module, ReLU6/hardtanh(0, x)) by an op
//    whose backward follows a rule: plain gradient, DeconvNet (Zeiler & Fergus 2014: relu(grad_out)) or
//    guided backpropagation (Springenberg et al. 2015: relu(grad_out) * (x > 0)).
// Views are compiled once per distinct ViewSpec (taps resolved to layers; the three rules share one view)
// and cached. Inference views (no gradients)
// run as a method of a frozen, optimize_for_inference'd copy of the module when freezing works for the
// model (BatchNorm folded, MKLDNN layouts), and agree with plain views to float rounding.
// Limits, reported rather than hidden: frozen models (torch.jit.freeze) have no module names, so their
// taps are op-level ("conv2d_3"); calls inside data-dependent control flow cannot be tapped; leaky_relu,
// threshold, prelu and clamp are not rewritten by the rules (a warning names them).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/model/layer.h"
#include "cnnviz/model/model.h"

namespace cnnviz {

// How gradients pass through ReLUs in a view's backward pass. For the other ReLU-like activations
// (silu, gelu, hardswish, hardsigmoid, elu/selu/celu, leaky_relu, mish) with local slope f'(x):
// gradient g·f'(x); DeconvNet relu(g)·s, s the slope of the activation's "on" regime (1; elu's scale;
// 1/6 for hardsigmoid); guided relu(g)·max(f'(x), 0); redirected = gradient. Both reduce to the ReLU
// rules below for ReLU. Anything else (sigmoid, tanh, prelu, ...) keeps its gradient: Probe::Coverage.
enum class BackwardRule {
  kGradient = 0,   // the true gradient: grad_out * (x > 0)
  kDeconvNet = 1,  // Zeiler & Fergus: relu(grad_out), ignoring the forward mask
  kGuided = 2,     // Springenberg et al.: relu(grad_out) * (x > 0)
  // Lucid's redirected ReLU gradient (render_vis(relu_gradient_override=True)), for a loss being
  // minimized: per batch element whose true gradient through this ReLU is zero everywhere, grad_out
  // passes except where the input is below the lower bound and grad_out > 0 (a descent step would push
  // it further down; for ReLU6 also above 6 with grad_out < 0); elsewhere the true gradient. A unit silent
  // on the starting image thus gets a gradient at all.
  kRedirected = 3,
};
// "gradient", "deconvnet", "guided".
std::string ToString(BackwardRule rule);
// Throws UsageError for anything else.
BackwardRule ParseBackwardRule(const std::string& text);

// What a view computes.
struct ViewSpec {
  // Layer names or aliases to return, in this order.
  std::vector<std::string> taps;
  // Also return the model's final output. When false the graph is cut after the deepest tap.
  bool output = false;
  // Backward rule through ReLUs. kGradient uses the model's own graph unchanged.
  BackwardRule rule = BackwardRule::kGradient;
  // No gradient will be asked for (dataset scans): the view may also use inference-only rewrites
  // (torch.jit.optimize_for_inference's MKLDNN layouts and conv-add-relu fusion). Values agree with the
  // plain view to float rounding.
  bool inference = false;
  // Inference views only: the caller takes taps in any memory format. On a CPU the view then runs in
  // channels-last (NHWC) dense layouts instead of MKLDNN's blocked ones, and taps come back channels-last
  // for most networks: converting MKLDNN's layouts back to NCHW costs more than the convolutions of
  // small networks (all five taps of the bundled model, batch 16 at 96x96, 1 thread: 10.4 ms against
  // 19.0 ms), and resnet18 runs as fast either way.
  bool channels_last = false;
  // Views that take gradients, with one tap, no final output and the plain rule: the tap computes only
  // channel select[i] for batch element i (Run's `select`) and comes back [N, 1, H, W]. Possible where the
  // tapped layer is a convolution followed by nothing or ReLUs (Probe::CanSelectChannels); its other
  // channels are what the step would otherwise spend most on (the bundled model's conv3: 64 channels).
  bool select_channels = false;
  // Views that take gradients: each returned tap lies on the path to the later taps and the output, so
  // autograd can differentiate an objective of those with respect to the tap (Grad-CAM's weights,
  // attribution to a layer). Without it a tap is a side copy: gradients reach the input, not the tap.
  // Costs one more copy of each tap. As for any gradient, the input must require grad (a model's weights
  // do not).
  bool tap_gradients = false;
};

// Which activations of a view a backward rule covers, by name ("relu", "silu", ...) with counts, and
// which keep their plain gradient (sigmoid gates, tanh, prelu, ...). See Probe::Coverage.
struct RuleCoverage {
  std::map<std::string, int64_t> covered;
  std::map<std::string, int64_t> plain_gradient;
  int64_t covered_count() const;
  // "covers relu x5, silu x16; plain gradient: sigmoid x16".
  std::string Describe() const;
};

struct ProbeOutput {
  std::vector<at::Tensor> taps;  // one per ViewSpec::taps
  at::Tensor output;             // undefined unless ViewSpec::output
};

class Probe {
 public:
  // Builds the tap graph and the layer catalogue at the model's input size (its input spec).
  // Throws ModelError when the input is too small for the network.
  explicit Probe(std::shared_ptr<const Model> model);
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  const Model& model() const { return *model_; }
  // Every layer, in forward order.
  const std::vector<LayerInfo>& layers() const;
  // A layer by module path or alias. Throws UsageError naming the closest layers when unknown, and
  // ModelError when the layer exists but cannot be tapped.
  const LayerInfo& Find(const std::string& name_or_alias) const;
  // Find, for methods that read units (channels) on axis 1: throws UsageError, naming the axis, for a
  // layer whose channels lie on another axis (channels-last blocks), rather than reading image rows as
  // units.
  const LayerInfo& FindUnits(const std::string& name_or_alias) const;
  // Things the user should know about this model (frozen, untappable calls, unrewritten activations).
  const std::vector<std::string>& warnings() const;
  // True when taps are op-level because the model has no module structure (frozen).
  bool op_level() const;

  // Runs the view on `input` (already preprocessed, on the model's device). Autograd flows from the
  // returned tensors back to `input` when it requires grad.
  // With ViewSpec::select_channels, `select` holds one channel index per batch element (int64 [N]).
  ProbeOutput Run(const ViewSpec& spec, const at::Tensor& input, const at::Tensor& select = {}) const;

  // The activations in front of `spec`'s taps (or the output) that the DeconvNet and guided rules
  // replace, and those they leave with the plain gradient (compiles the rule view if needed).
  RuleCoverage Coverage(const ViewSpec& spec) const;

  // Whether a view with ViewSpec::select_channels can be built for `spec` (compiles it if needed).
  bool CanSelectChannels(const ViewSpec& spec) const;

  // Number of nodes in the compiled view's graph: a measure of how much truncation removed.
  size_t ViewSize(const ViewSpec& spec) const;

 private:
  struct Impl;
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cnnviz
