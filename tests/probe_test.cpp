// Taps, final outputs and truncation against eager-PyTorch references, on torchvision architectures and
// the bundled model, scripted and traced.
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <set>

#include "cnnviz/core/precision.h"
#include "test_util.h"

namespace cnnviz {
namespace {

using test::LoadFixtureModel;
using test::LoadReference;
using test::RelativeError;

constexpr int64_t kSize = 64;  // tests/fixtures/make_fixtures.py REFERENCE_SIZE
// Python and LibTorch may pick different kernels and thread splits: float32 rounding accumulates to
// ~2e-5 (relative) after mobilenet_v2's 52 layers. Outputs of the C++ runtime itself are compared exactly.
constexpr double kTolerance = 1e-4;

class ProbeModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = LoadFixtureModel(GetParam() + ".pt", kSize);
    probe_ = std::make_unique<Probe>(model_);
    reference_ = LoadReference(test::Fixture(GetParam() + "_ref.pt"));
    input_ = reference_.at("input").toTensor();
  }

  std::vector<std::string> ReferenceOrder() const {
    std::vector<std::string> order;
    for (const auto& name : reference_.at("order").toListRef()) order.push_back(name.toStringRef());
    return order;
  }

  std::shared_ptr<Model> model_;
  std::unique_ptr<Probe> probe_;
  test::Reference reference_;
  at::Tensor input_;
};

TEST_P(ProbeModelTest, ListsExactlyTheHookedLayers) {
  std::set<std::string> listed;
  for (const auto& layer : probe_->layers()) {
    EXPECT_TRUE(layer.tappable) << layer.name;
    listed.insert(layer.name);
  }
  const auto order = ReferenceOrder();
  const std::set<std::string> hooked(order.begin(), order.end());
  EXPECT_EQ(listed, hooked);
}

TEST_P(ProbeModelTest, EveryTapEqualsTheEagerHookOutput) {
  ViewSpec spec;
  spec.taps = ReferenceOrder();
  spec.output = true;
  at::NoGradGuard no_grad;
  ProbeOutput out = probe_->Run(spec, input_);
  ASSERT_EQ(out.taps.size(), spec.taps.size());
  for (size_t i = 0; i < spec.taps.size(); ++i) {
    const at::Tensor expected = reference_.at("tap:" + spec.taps[i]).toTensor();
    EXPECT_LE(RelativeError(out.taps[i], expected), kTolerance) << spec.taps[i];
    EXPECT_EQ(probe_->Find(spec.taps[i]).shape, expected.sizes().vec()) << spec.taps[i];
  }
  EXPECT_LE(RelativeError(out.output, reference_.at("output").toTensor()), kTolerance);
}

TEST_P(ProbeModelTest, FinalOutputEqualsModuleForwardExactly) {
  at::NoGradGuard no_grad;
  ViewSpec spec;
  spec.taps = {ReferenceOrder().front()};
  spec.output = true;
  const at::Tensor expected = model_->Forward(input_);
  EXPECT_TRUE(at::equal(probe_->Run(spec, input_).output, expected));
}

// Inference views (frozen, BatchNorm folded, MKLDNN or channels-last layouts, clones alias analysis finds
// unneeded dropped) agree with plain views to float rounding, for every layer the reference lists (pre-ReLU
// taps among them, which a later relu_ overwrites without their clone) and the final output.
TEST_P(ProbeModelTest, InferenceViewsAgreeWithPlainViews) {
  at::NoGradGuard no_grad;
  ViewSpec plain;
  plain.taps = ReferenceOrder();
  plain.output = true;
  const ProbeOutput expected = probe_->Run(plain, input_);
  for (const bool channels_last : {false, true}) {
    ViewSpec inference = plain;
    inference.inference = true;
    inference.channels_last = channels_last;
    const ProbeOutput got = probe_->Run(inference, input_);
    ASSERT_EQ(got.taps.size(), expected.taps.size());
    for (size_t i = 0; i < got.taps.size(); ++i) {
      EXPECT_LT(test::RelativeError(got.taps[i], expected.taps[i]), 1e-4) << plain.taps[i] << " nhwc " << channels_last;
    }
    EXPECT_LT(test::RelativeError(got.output, expected.output), 1e-4) << "nhwc " << channels_last;
  }
}

TEST_P(ProbeModelTest, TruncatedViewsReturnTheSameTapsAndRunLess) {
  const std::string mid = reference_.at("mid_layer").toStringRef();
  at::NoGradGuard no_grad;
  ViewSpec truncated{{mid}, /*output=*/false};
  ViewSpec full{{mid}, /*output=*/true};
  const at::Tensor cut = probe_->Run(truncated, input_).taps[0];
  const at::Tensor whole = probe_->Run(full, input_).taps[0];
  EXPECT_TRUE(at::equal(cut, whole));
  EXPECT_LT(probe_->ViewSize(truncated), probe_->ViewSize(full));
  // The first layer alone needs only a handful of nodes.
  ViewSpec first{{ReferenceOrder().front()}, false};
  EXPECT_LT(probe_->ViewSize(first), probe_->ViewSize(truncated));
}

// Batch-1 views with gradients run small convolutions on oneDNN (see RewriteSmallBatchConvolutions), the
// Python reference on ATen's im2col path. googlenet's random-weight input gradients depend on that choice
// far more than other networks' (PyTorch alone: 1.7e-2 between batch 1 and batch 2; here 1.5e-3).
double GradientTolerance() {
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->value_param();
  return name.find("googlenet") != std::string::npos ? 5e-3 : kTolerance;
}

TEST_P(ProbeModelTest, InputGradientsUnderEveryRuleMatchThePythonReference) {
  const std::string mid = reference_.at("mid_layer").toStringRef();
  for (BackwardRule rule : {BackwardRule::kGradient, BackwardRule::kDeconvNet, BackwardRule::kGuided}) {
    for (const std::string objective : {"logit", "mid"}) {
      at::Tensor input = input_.clone().requires_grad_(true);
      ViewSpec spec;
      spec.rule = rule;
      if (objective == "logit") {
        spec.taps = {mid};
        spec.output = true;
        probe_->Run(spec, input).output.select(0, 0).select(0, 7).backward();
      } else {
        spec.taps = {mid};
        probe_->Run(spec, input).taps[0].sum().backward();
      }
      const at::Tensor expected = reference_.at("grad:" + ToString(rule) + ":" + objective).toTensor();
      EXPECT_LE(RelativeError(input.grad(), expected), GradientTolerance()) << ToString(rule) << " " << objective;
      EXPECT_GT(input.grad().abs().sum().item<double>(), 0.0) << ToString(rule) << " " << objective;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ProbeModelTest,
                         ::testing::Values("alexnet_script", "alexnet_trace", "vgg16_script", "vgg16_trace",
                                           "resnet18_script", "resnet18_trace", "googlenet_script",
                                           "googlenet_trace", "mobilenet_v2_script", "mobilenet_v2_trace",
                                           "tinycnn_script", "tinycnn_trace"),
                         [](const auto& info) { return info.param; });

// Views that compute one channel per batch element return that channel of the full view, with the same
// input gradient; layers that are not a convolution followed by ReLUs say so instead.
TEST(ProbeTest, SelectedChannelViewsEqualTheFullViewsChannels) {
  for (const auto& [fixture, layer] : std::vector<std::pair<std::string, std::string>>{
           {"tinycnn_script.pt", "conv3"}, {"tinycnn_trace.pt", "conv5"}, {"tinycnn_script.pt", "conv2.0"},
           {"vgg16_script.pt", "features.7"}}) {
    Probe probe(LoadFixtureModel(fixture, kSize));
    ViewSpec full{{layer}, false};
    ViewSpec selecting = full;
    selecting.select_channels = true;
    ASSERT_TRUE(probe.CanSelectChannels(full)) << fixture << " " << layer;
    at::manual_seed(2);
    const at::Tensor x = at::randn({3, 3, kSize, kSize});
    const int64_t channels = probe.Find(layer).shape[1];
    const at::Tensor select = at::tensor(std::vector<int64_t>{channels - 1, 0, 5}, at::kLong);
    at::Tensor full_x = x.clone().requires_grad_(true);
    const at::Tensor all = probe.Run(full, full_x).taps[0];
    const at::Tensor expected = all.gather(1, select.view({3, 1, 1, 1}).expand({3, 1, all.size(2), all.size(3)}));
    expected.sum().backward();
    at::Tensor ours_x = x.clone().requires_grad_(true);
    const at::Tensor ours = probe.Run(selecting, ours_x, select).taps[0];
    ours.sum().backward();
    EXPECT_LE(RelativeError(ours, expected), 1e-5) << fixture << " " << layer;
    EXPECT_LE(RelativeError(ours_x.grad(), full_x.grad()), 1e-5) << fixture << " " << layer;
    EXPECT_GT(ours_x.grad().abs().sum().item<double>(), 0.0);
  }
  Probe resnet(LoadFixtureModel("resnet18_script.pt", kSize));
  EXPECT_FALSE(resnet.CanSelectChannels(ViewSpec{{"layer2"}, false}));  // BatchNorm, then a sum
  Probe tiny(LoadFixtureModel("tinycnn_script.pt", kSize));
  EXPECT_FALSE(tiny.CanSelectChannels(ViewSpec{{"pool2"}, false}));  // a pooling layer
  EXPECT_FALSE(tiny.CanSelectChannels(ViewSpec{{"conv2", "conv3"}, false}));  // two taps
  EXPECT_THROW(tiny.Run(ViewSpec{{"pool2"}, false, BackwardRule::kGradient, false, false, true},
                        at::zeros({1, 3, kSize, kSize}), at::zeros({1}, at::kLong)),
               std::logic_error);
}

TEST(ProbeTest, UnknownLayerSuggestsTheClosestNames) {
  Probe probe(test::LoadFixtureModel("alexnet_script.pt", kSize));
  try {
    probe.Find("features.1O");
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("unknown layer 'features.1O'"), std::string::npos) << message;
    EXPECT_NE(message.find("'features.10'"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
}

TEST(ProbeTest, AliasesFromTheSidecarResolve) {
  Probe probe(test::LoadFixtureModel("alexnet_script.pt", kSize));
  EXPECT_EQ(probe.Find("conv5").name, "features.10");
  EXPECT_EQ(probe.Find("features.10").alias, "conv5");
}

// Channels-last inference views compute 2x2 max pooling from four strided views; on odd sizes floor mode
// drops the last row and column, as max_pool2d does (the bundled model at 90x90 pools 45x45 maps to 22x22).
TEST(ProbeTest, HalvingMaxPoolsOfChannelsLastViewsMatchOnOddSizes) {
  for (const int64_t size : {90, 96}) {
    Probe probe(test::LoadFixtureModel("tinycnn_script.pt", size));
    at::NoGradGuard no_grad;
    at::manual_seed(5);
    const at::Tensor input = at::randn({3, 3, size, size});
    ViewSpec plain{{"conv3", "conv5"}, /*output=*/true};
    ViewSpec nhwc = plain;
    nhwc.inference = true;
    nhwc.channels_last = true;
    const ProbeOutput expected = probe.Run(plain, input), got = probe.Run(nhwc, input);
    for (size_t i = 0; i < got.taps.size(); ++i) {
      EXPECT_EQ(got.taps[i].sizes(), expected.taps[i].sizes()) << size;
      EXPECT_LT(test::RelativeError(got.taps[i], expected.taps[i]), 1e-4) << size << " tap " << i;
    }
    EXPECT_LT(test::RelativeError(got.output, expected.output), 1e-4) << size;
  }
}

// Freezing bakes autocast's state into a view's graph: one probe's inference view must give float32's
// exact values after it ran in bf16, and bf16's after float32 (regression: the first frozen view served
// both, so a scan in fp32 after one in bf16, in either order, ran at the first one's precision).
TEST(ProbeTest, InferenceViewsAreFrozenPerPrecision) {
  if (CpuBf16Flag().empty()) GTEST_SKIP() << "this CPU has no native bfloat16";
  const auto model = test::LoadFixtureModel("tinycnn_script.pt", 96);
  at::NoGradGuard no_grad;
  at::manual_seed(3);
  const at::Tensor input = at::rand({4, 3, 96, 96});
  ViewSpec spec{{"conv3", "conv5"}, /*output=*/false};
  spec.inference = true;
  spec.channels_last = true;
  auto run = [&](const Probe& probe, Precision precision) {
    const AutocastGuard autocast(precision, model->device());
    return probe.Run(spec, input).taps;
  };
  const Probe fresh_fp32(model), fresh_bf16(model);
  const std::vector<at::Tensor> fp32 = run(fresh_fp32, Precision::kFp32), bf16 = run(fresh_bf16, Precision::kBf16);
  ASSERT_EQ(bf16[0].scalar_type(), at::kBFloat16);
  for (const bool bf16_first : {true, false}) {
    const Probe probe(model);
    const auto first = run(probe, bf16_first ? Precision::kBf16 : Precision::kFp32);
    const auto second = run(probe, bf16_first ? Precision::kFp32 : Precision::kBf16);
    const auto& got_fp32 = bf16_first ? second : first;
    const auto& got_bf16 = bf16_first ? first : second;
    for (size_t i = 0; i < fp32.size(); ++i) {
      EXPECT_EQ(got_fp32[i].scalar_type(), at::kFloat) << "bf16 first: " << bf16_first;
      EXPECT_TRUE(got_fp32[i].equal(fp32[i])) << "tap " << i << ", bf16 first: " << bf16_first;
      EXPECT_TRUE(got_bf16[i].equal(bf16[i])) << "tap " << i << ", bf16 first: " << bf16_first;
    }
  }
  EXPECT_FALSE(bf16[1].to(at::kFloat).equal(fp32[1]));
}

TEST(ProbeTest, RepeatedCallsGetNumberedTaps) {
  // resnet18's BasicBlock calls its one ReLU module twice.
  Probe probe(test::LoadFixtureModel("resnet18_script.pt", kSize));
  EXPECT_EQ(probe.Find("layer1.0.relu#1").type, "ReLU");
}

TEST(ProbeTest, FrozenModelsFallBackToOpLevelTaps) {
  auto model = test::LoadFixtureModel("frozen.pt", 32);
  Probe probe(model);
  EXPECT_TRUE(probe.op_level());
  ASSERT_FALSE(probe.warnings().empty());
  EXPECT_NE(probe.warnings()[0].find("frozen"), std::string::npos);
  const LayerInfo& conv = probe.Find("conv2d_0");
  EXPECT_EQ(conv.shape, (std::vector<int64_t>{1, 4, 30, 30}));
  at::Tensor input = at::randn({1, 3, 32, 32});
  ViewSpec spec{{"linear_0"}, true};
  at::NoGradGuard no_grad;  // bit-exact without gradients (with them, small convolutions run on oneDNN)
  ProbeOutput out = probe.Run(spec, input);
  EXPECT_TRUE(at::equal(out.taps[0], model->Forward(input)));
}

TEST(ProbeTest, CallsInsideControlFlowAreReportedNotSkipped) {
  Probe probe(test::LoadFixtureModel("control_flow.pt", 32));
  bool reported = false;
  for (const auto& layer : probe.layers()) {
    if (layer.name == "b") {
      EXPECT_FALSE(layer.tappable);
      reported = true;
    }
  }
  EXPECT_TRUE(reported);
  EXPECT_THROW(probe.Find("b"), ModelError);
  EXPECT_NO_THROW(probe.Find("a"));
}

TEST(ProbeTest, InputTooSmallIsAModelError) {
  auto model = test::LoadFixtureModel("alexnet_script.pt", 16);
  try {
    Probe probe(model);
    FAIL() << "expected ModelError";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

// A ConvNeXt-style block permutes to channels-last: its layers' units are counted along axis 3, and unit
// methods refuse them by name instead of reading image rows as units. Scripted and traced alike.
TEST(ProbeChannelAxisTest, ChannelsLastLayersCountChannelsAndAreRefusedForUnits) {
  for (const char* file : {"channels_last_script.pt", "channels_last_trace.pt"}) {
    Probe probe(test::LoadFixtureModel(file, 16));
    EXPECT_EQ(probe.Find("block.0").channel_axis, 1) << file;
    EXPECT_EQ(probe.Find("block.3").channel_axis, 3) << file;
    EXPECT_EQ(probe.Find("block.3").units, 32) << file;  // Linear 8 -> 32 on the last axis, not 16 rows
    EXPECT_EQ(probe.Find("block.2").units, 8) << file;
    EXPECT_EQ(probe.Find("block.6").channel_axis, 1) << file;  // permuted back
    EXPECT_EQ(probe.Find("head").units, 4) << file;
    EXPECT_NO_THROW(probe.FindUnits("block.6"));
    try {
      probe.FindUnits("block.3");
      ADD_FAILURE() << "block.3 accepted for units";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("axis 3"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

// Gradients with respect to taps (ViewSpec::tap_gradients), checked by a Grad-CAM sketch (Selvaraju et
// al. 2017: relu(sum_c mean_hw(d logit / d A)_c * A_c)) against eager PyTorch with hooks. layer3.1's
// output is read again by layer4's downsample and first conv: both paths must reach the tap.
TEST(ProbeTapGradientTest, GradCamEqualsPythonAndPlainTapsStayOffThePath) {
  Probe probe(test::LoadFixtureModel("resnet18_script.pt", 64));
  const test::Reference reference = test::LoadReference(test::Fixture("resnet18_gradcam_ref.pt"));
  const at::Tensor input = reference.at("input").toTensor();
  const int64_t target = reference.at("class").toTensor().item<int64_t>();
  for (const std::string layer : {"layer4", "layer3.1"}) {
    ViewSpec spec;
    spec.taps = {layer};
    spec.output = true;
    spec.tap_gradients = true;
    const ProbeOutput out = probe.Run(spec, input.clone().requires_grad_(true));
    const at::Tensor grad = torch::autograd::grad({out.output[0][target]}, {out.taps[0]})[0];
    EXPECT_LT(test::RelativeError(grad, reference.at("grad:" + layer).toTensor()), 1e-4) << layer;
    const at::Tensor cam = at::relu((grad.mean({2, 3}, /*keepdim=*/true) * out.taps[0]).sum(1));
    EXPECT_LT(test::RelativeError(cam.detach(), reference.at("cam:" + layer).toTensor()), 1e-4) << layer;

    // A plain view's tap is a side copy: the output does not depend on it.
    spec.tap_gradients = false;
    const ProbeOutput plain = probe.Run(spec, input.clone().requires_grad_(true));
    const auto unused = torch::autograd::grad({plain.output[0][target]}, {plain.taps[0]}, {}, c10::nullopt,
                                              /*create_graph=*/false, /*allow_unused=*/true);
    EXPECT_FALSE(unused[0].defined()) << layer;
    EXPECT_TRUE(plain.taps[0].equal(out.taps[0].detach())) << layer;
  }
}

}  // namespace
}  // namespace cnnviz
