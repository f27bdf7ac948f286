// The custom TorchScript ops of the Probe's views (private header): ReLU backward rules, small-batch and
// first-layer convolutions, fused ReLU + 2x2 max pooling, and own-channel convolutions (loops in
// src/model/cpu_loops.h).
#pragma once

#include <torch/script.h>

#include "cnnviz/model/probe.h"

#include <string>
#include <vector>

namespace cnnviz::detail {

// The activations cnnviz::activation_rule covers beside ReLU, ReLU6 and hardtanh(0, t).
enum ActivationKind : int64_t {
  kSilu = 0,
  kGelu = 1,
  kGeluTanh = 2,
  kHardswish = 3,
  kHardsigmoid = 4,
  kElu = 5,  // also selu and celu, as elu(alpha, scale, input_scale)
  kLeakyRelu = 6,
  kMish = 7,
};
// "silu", "gelu", ...
const char* ActivationName(int64_t kind);
// The slope of an activation's "on" regime, which the DeconvNet rule passes: 1, elu's scale, 1/6 for
// hardsigmoid.
double OnSlope(int64_t kind, double a, double b);

// Replaces every ReLU-like node of `graph` by an op taking `rule` (an int graph input, see
// BackwardRule): relu(_) by cnnviz::relu_rule; relu6(_) and hardtanh(_) with a lower bound of 0 by
// cnnviz::clamp_rule; silu, gelu, hardswish, hardsigmoid, elu, selu, celu, leaky_relu and mish (and
// their in-place forms) by cnnviz::activation_rule (rules in relu_rules.cpp). Anything else keeps its
// plain gradient; CountRuleCoverage says what was covered.
void RewriteRelus(torch::jit::Graph& graph, torch::jit::Value* rule);

// The activations of a (rewritten, dead-code-eliminated) view graph that its rule covers, and those
// left with their plain gradient, by name.
RuleCoverage CountRuleCoverage(torch::jit::Graph& graph);

// Replaces 2-D convolutions (aten::conv2d with int padding, and non-transposed aten::_convolution of
// traced models) by cnnviz::conv2d, which runs a batch of one small input as a batch of two. ATen sends
// batch-1 convolutions of at most 20480 input elements with kernels up to 3x3 to its im2col + BLAS
// path instead of oneDNN; with a reference BLAS (Debian's) that path is ~13x slower than oneDNN on the
// doubled batch (128->128 channels, 10x10, forward + backward, 1 thread). Only while gradients are
// recorded: no-grad runs use the plain convolution and stay bit-identical to module.forward. Values agree
// with the plain convolution to float rounding (gradients of deep random networks such as googlenet are
// sensitive to the convolution algorithm: PyTorch's own batch-1 and batch-2 input gradients differ by
// 1.7e-2 relative there). Returns the number of convolutions replaced.
int RewriteSmallBatchConvolutions(torch::jit::Graph& graph);

// Replaces relu (or relu_) followed by 2x2, stride-2 max pooling (no padding, dilation 1, floor mode)
// by cnnviz::relu_max_pool2x2, where nothing else reads the relu's output (or, for relu_, its input).
// While gradients are recorded on a CPU, that op computes both in one pass over channels-last maps and
// its backward writes the input gradient in one more (src/model/cpu_loops.h); anywhere else it runs
// ATen's relu and max_pool2d. Values and gradients equal ATen's exactly. For CPU views that take
// gradients under the plain rule. Returns the number of pairs replaced.
int RewriteReluMaxPools(torch::jit::Graph& graph);

// For views with one tap whose value is a convolution (cnnviz::conv2d, one group) followed by nothing or
// ReLUs only, each read by the next alone: replaces the convolution by cnnviz::conv2d_select, which
// computes channel select[i] alone for batch element i (`select`, a Tensor input of the graph). The tap
// becomes [N, 1, H, W]. On a CPU with frozen weights it runs loops (src/model/cpu_loops.h), elsewhere a
// grouped convolution. Returns false, changing nothing, when the graph does not have that shape.
bool RewriteSelectedChannels(torch::jit::Graph& graph, torch::jit::Value* select);

// cnnviz::conv2d, the op RewriteSmallBatchConvolutions inserts. Composite (autograd records the ops inside):
// while gradients are recorded, batch-1 inputs on the slow path run doubled, and a CPU convolution of an
// input with 1 or 3 channels, whose weights need no gradient, computes the input's gradient with
// detail::ConvInputGradient (src/model/cpu_loops.h) instead of oneDNN; a recorded backward (double
// backward) runs as a transposed convolution instead. Without gradients the plain convolution runs, so
// no-grad outputs stay bit-identical to module.forward.
at::Tensor Conv2d(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

}  // namespace cnnviz::detail
