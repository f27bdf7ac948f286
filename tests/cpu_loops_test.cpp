// The CPU loops behind the custom ops of views that take gradients (src/model/cpu_loops.h) against ATen:
// cnnviz::conv2d's own input gradient for images with few channels, on the bundled model's and the
// torchvision first layers' shapes, odd sizes, borders that only some taps reach, layouts, and the double
// backward that Hessian-vector products take; cnnviz::relu_max_pool2x2 on odd sizes, ties and NaNs;
// cnnviz::conv2d_select against the full convolution's channels.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/jit/ir/irparser.h>
#include <torch/script.h>

#include <tuple>
#include <vector>

#include "src/model/cpu_loops.h"
#include "src/model/relu_rules.h"
#include "test_util.h"

namespace cnnviz {
namespace {

struct Case {
  int64_t channels, out_channels, kernel, stride, padding, height, width;
};

// The input gradient of sum(conv(x) * weights) through cnnviz::conv2d and through ATen.
std::pair<at::Tensor, at::Tensor> Gradients(const Case& c, int64_t batch, bool channels_last, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor x = at::randn({batch, c.channels, c.height, c.width});
  if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor weight = at::randn({c.out_channels, c.channels, c.kernel, c.kernel});
  const at::Tensor bias = at::randn({c.out_channels});
  const std::vector<int64_t> stride{c.stride, c.stride}, padding{c.padding, c.padding}, dilation{1, 1};
  at::Tensor ours_x = x.detach().requires_grad_(true);
  const at::Tensor ours = detail::Conv2d(ours_x, weight, bias, stride, padding, dilation, 1);
  const at::Tensor seeds = at::randn_like(ours);
  (ours * seeds).sum().backward();
  at::Tensor aten_x = x.detach().requires_grad_(true);
  const at::Tensor expected = at::conv2d(aten_x, weight, bias, stride, padding, dilation, 1);
  EXPECT_TRUE(at::equal(ours, expected)) << "the forward is ATen's own";
  (expected * seeds).sum().backward();
  return {ours_x.grad(), aten_x.grad()};
}

TEST(ConvGradTest, FirstLayerInputGradientsEqualAtensOwn) {
  const std::vector<Case> cases = {
      {3, 16, 3, 1, 1, 37, 29},    // the bundled model's conv1
      {3, 64, 7, 2, 3, 45, 38},    // resnet18, googlenet: 7x7, stride 2, odd and even sizes
      {3, 64, 11, 4, 2, 67, 63},   // alexnet: 11x11, stride 4, columns no tap reaches on the right
      {3, 32, 3, 2, 1, 33, 32},    // mobilenet_v2: 3x3, stride 2
      {3, 64, 3, 1, 1, 20, 21},    // vgg16
      {1, 8, 5, 1, 0, 19, 17},     // grayscale, no padding
      {3, 128, 4, 3, 2, 26, 25},   // even kernel, stride not dividing the size
  };
  for (const Case& c : cases) {
    for (const bool channels_last : {false, true}) {
      const auto [ours, expected] = Gradients(c, 3, channels_last, 7 + c.kernel);
      EXPECT_LE(test::RelativeError(ours, expected), 1e-5)
          << c.channels << "->" << c.out_channels << " k" << c.kernel << " s" << c.stride << " nhwc " << channels_last;
    }
  }
}

TEST(ConvGradTest, OnlyFewChannelInputsWithFrozenWeightsTakeTheLoop) {
  detail::ConvShape shape;
  shape.in_channels = 3;
  shape.out_channels = 16;
  shape.kernel_h = shape.kernel_w = 3;
  EXPECT_TRUE(detail::ConvInputGradientSupported(shape));
  shape.out_channels = 24;  // not a power of two: ATen's backward
  EXPECT_FALSE(detail::ConvInputGradientSupported(shape));
  shape.out_channels = 16;
  shape.in_channels = 16;  // a deeper layer: oneDNN is fast there
  EXPECT_FALSE(detail::ConvInputGradientSupported(shape));

  // Weights that need a gradient get ATen's backward, which gives it.
  at::manual_seed(3);
  const at::Tensor x = at::randn({2, 3, 12, 12}).requires_grad_(true);
  const at::Tensor weight = at::randn({16, 3, 3, 3}).requires_grad_(true);
  detail::Conv2d(x, weight, {}, {1, 1}, {1, 1}, {1, 1}, 1).square().sum().backward();
  ASSERT_TRUE(weight.grad().defined());
  const at::Tensor w = weight.detach().requires_grad_(true);
  at::conv2d(x.detach(), w, {}, {1, 1}, {1, 1}).square().sum().backward();
  EXPECT_LE(test::RelativeError(weight.grad(), w.grad()), 1e-5);
}

TEST(ConvGradTest, DoubleBackwardThroughTheLoopsConvolutionIsExact) {
  // A Hessian-vector product of sum(tanh(conv(x))): the recorded backward must be differentiable.
  at::manual_seed(5);
  const at::Tensor x0 = at::randn({2, 3, 15, 14});
  const at::Tensor weight = at::randn({64, 3, 7, 7}).mul(0.1);
  const at::Tensor v = at::randn_like(x0);
  auto hvp = [&](bool ours) {
    at::Tensor x = x0.clone().requires_grad_(true);
    const at::Tensor y = ours ? detail::Conv2d(x, weight, {}, {2, 2}, {3, 3}, {1, 1}, 1)
                              : at::conv2d(x, weight, {}, {2, 2}, {3, 3});
    const at::Tensor g = torch::autograd::grad({y.tanh().sum()}, {x}, {}, true, true)[0];
    return torch::autograd::grad({(g * v).sum()}, {x})[0];
  };
  const at::Tensor expected = hvp(false);
  EXPECT_GT(expected.abs().max().item<double>(), 0.0);
  EXPECT_LE(test::RelativeError(hvp(true), expected), 1e-5);
}

at::Tensor ReluMaxPool(const at::Tensor& x) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cnnviz::relu_max_pool2x2", "")
                             .typed<at::Tensor(const at::Tensor&)>();
  return op.call(x);
}

TEST(ReluMaxPoolTest, ValuesAndGradientsEqualAtensReluThenMaxPoolExactly) {
  for (const auto& [height, width] : {std::pair<int64_t, int64_t>{8, 8}, {9, 7}, {3, 2}}) {
    for (const int64_t channels : {1, 16, 37}) {
      for (const bool channels_last : {true, false}) {
        at::manual_seed(height * 100 + channels);
        // A coarse grid: ties within windows, at 0 and above it.
        at::Tensor x = at::randn({3, channels, height, width}).mul(2).round().div(2);
        x.select(1, 0).select(1, 0).select(1, 0).fill_(NAN);  // a NaN in one window of every image
        x.select(1, 0).select(1, 1).select(1, 1).fill_(NAN);  // and a second one in that window
        if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
        const at::Tensor seeds = at::randn({3, channels, height / 2, width / 2});
        at::Tensor ours_x = x.detach().requires_grad_(true);
        const at::Tensor ours = ReluMaxPool(ours_x);
        (ours * seeds).nan_to_num(0).sum().backward();
        at::Tensor aten_x = x.detach().requires_grad_(true);
        const at::Tensor expected = at::max_pool2d(at::relu(aten_x), {2, 2}, {2, 2});
        (expected * seeds).nan_to_num(0).sum().backward();
        const std::string where = std::to_string(height) + "x" + std::to_string(width) + "x" +
                                  std::to_string(channels) + (channels_last ? " nhwc" : " nchw");
        EXPECT_TRUE(at::equal(ours.nan_to_num(-7), expected.nan_to_num(-7))) << where;
        EXPECT_TRUE(at::equal(ours_x.grad().nan_to_num(-7), aten_x.grad().nan_to_num(-7))) << where;
        // (Windows holding a NaN pass no gradient through nan_to_num; one channel of 3x2 is all such.)
        if (channels > 1) {
          EXPECT_GT(ours_x.grad().abs().sum().item<double>(), 0.0) << where;
        }
      }
    }
  }
  // Without gradients, and for the recorded backward, the op is ATen's own.
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 4, 6, 6});
  EXPECT_TRUE(at::equal(ReluMaxPool(x), at::max_pool2d(at::relu(x), {2, 2}, {2, 2})));
}

TEST(ReluMaxPoolTest, TheRewriteLeavesReluOutputsOthersReadAlone) {
  auto graph = std::make_shared<torch::jit::Graph>();
  torch::jit::parseIR(R"IR(
graph(%x : Tensor, %y : Tensor):
  %k : int[] = prim::Constant[value=[2, 2]]()
  %s : int[] = prim::Constant[value=[2, 2]]()
  %p : int[] = prim::Constant[value=[0, 0]]()
  %d : int[] = prim::Constant[value=[1, 1]]()
  %f : bool = prim::Constant[value=0]()
  %a : Tensor = aten::relu_(%x)
  %b : Tensor = aten::max_pool2d(%a, %k, %s, %p, %d, %f)
  %c : Tensor = aten::relu(%y)
  %e : Tensor = aten::max_pool2d(%c, %k, %s, %p, %d, %f)
  %g : Tensor = aten::relu(%y)
  %h : Tensor = aten::max_pool2d(%g, %k, %s, %p, %d, %f)
  %r : (Tensor, Tensor, Tensor, Tensor) = prim::TupleConstruct(%b, %e, %h, %g)
  return (%r))IR",
                       graph.get());
  // The first two pairs are rewritten; the third's relu output is returned too.
  EXPECT_EQ(detail::RewriteReluMaxPools(*graph), 2);
  int fused = 0, pools = 0;
  for (torch::jit::Node* node : graph->nodes()) {
    fused += node->kind() == c10::Symbol::fromQualString("cnnviz::relu_max_pool2x2");
    pools += node->kind() == c10::aten::max_pool2d;
  }
  EXPECT_EQ(fused, 2);
  EXPECT_EQ(pools, 1);
}

at::Tensor SelectedConv(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        std::vector<int64_t> stride, std::vector<int64_t> padding, const at::Tensor& select) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cnnviz::conv2d_select", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&, at::IntArrayRef,
                            at::IntArrayRef, at::IntArrayRef, const at::Tensor&)>();
  return op.call(x, weight, bias, stride, padding, {1, 1}, select);
}

TEST(SelectedConvTest, EachImagesChannelAndInputGradientEqualTheFullConvolutions) {
  struct Case {
    int64_t channels, out_channels, kernel, stride, padding, height, width;
    bool bias;
  };
  // The bundled model's conv3; channel counts off the 32-float blocks; stride 2 on odd sizes; 1x1.
  for (const Case& c : std::vector<Case>{{32, 64, 3, 1, 1, 17, 15, true},
                                         {37, 9, 3, 2, 1, 13, 12, false},
                                         {64, 20, 5, 2, 2, 11, 14, true},
                                         {16, 8, 1, 1, 0, 7, 6, true}}) {
    at::manual_seed(c.channels);
    const at::Tensor x = at::randn({4, c.channels, c.height, c.width}).contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor weight = at::randn({c.out_channels, c.channels, c.kernel, c.kernel});
    const c10::optional<at::Tensor> bias = c.bias ? c10::optional<at::Tensor>(at::randn({c.out_channels})) : c10::nullopt;
    const at::Tensor select = at::tensor(std::vector<int64_t>{c.out_channels - 1, 0, 3, 3}, at::kLong);
    at::Tensor ours_x = x.detach().requires_grad_(true);
    const at::Tensor ours = SelectedConv(ours_x, weight, bias, {c.stride, c.stride}, {c.padding, c.padding}, select);
    at::Tensor full_x = x.detach().requires_grad_(true);
    const at::Tensor full = at::conv2d(full_x, weight, bias, {c.stride, c.stride}, {c.padding, c.padding});
    const at::Tensor expected = full.gather(1, select.view({4, 1, 1, 1}).expand({4, 1, full.size(2), full.size(3)}));
    ASSERT_EQ(ours.sizes(), expected.sizes());
    EXPECT_LE(test::RelativeError(ours, expected), 1e-5) << c.channels;
    const at::Tensor seeds = at::relu(at::randn_like(expected));  // zeros, as behind a ReLU
    (ours * seeds).sum().backward();
    (expected * seeds).sum().backward();
    EXPECT_LE(test::RelativeError(ours_x.grad(), full_x.grad()), 1e-5) << c.channels;

    // Double backward (recorded backward) runs as a grouped transposed convolution.
    at::Tensor twice_x = x.detach().requires_grad_(true);
    const at::Tensor y = SelectedConv(twice_x, weight, bias, {c.stride, c.stride}, {c.padding, c.padding}, select);
    const at::Tensor g = torch::autograd::grad({y.tanh().sum()}, {twice_x}, {}, true, true)[0];
    const at::Tensor hv = torch::autograd::grad({g.sum()}, {twice_x})[0];
    at::Tensor plain_x = x.detach().requires_grad_(true);
    const at::Tensor plain = at::conv2d(plain_x, weight, bias, {c.stride, c.stride}, {c.padding, c.padding})
                                 .gather(1, select.view({4, 1, 1, 1}).expand({4, 1, full.size(2), full.size(3)}));
    const at::Tensor plain_g = torch::autograd::grad({plain.tanh().sum()}, {plain_x}, {}, true, true)[0];
    EXPECT_LE(test::RelativeError(hv, torch::autograd::grad({plain_g.sum()}, {plain_x})[0]), 1e-4) << c.channels;
  }
}

}  // namespace
}  // namespace cnnviz
