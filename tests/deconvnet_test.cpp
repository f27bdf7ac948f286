// DeconvNet: projections worked out by hand for every rule, streaming top-k against brute force,
// receptive-field crops, and bad datasets.
#include "cnnviz/methods/deconvnet.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <set>

#include "cnnviz/io/image_sources.h"
#include "test_util.h"

namespace cnnviz {
namespace {

// Images held in memory.
class TensorSource : public ImageSource {
 public:
  explicit TensorSource(std::vector<at::Tensor> images) : images_(std::move(images)) {}
  size_t size() const override { return images_.size(); }
  std::string Name(size_t index) const override { return "image" + std::to_string(index); }
  at::Tensor Load(size_t index) const override { return images_.at(index); }

 private:
  std::vector<at::Tensor> images_;
};

// x (channel 0 of a 3x4x4 image, channels 1-2 zero); the nets use 4x, so x = hand values / 4.
at::Tensor KnownImage() {
  const at::Tensor x = at::tensor({1.f, 2.f, 0.f, 1.f, 0.f, 1.f, 3.f, 0.f, 2.f, 0.f, 1.f, 1.f, 1.f, 1.f, 0.f, 2.f})
                           .view({4, 4}) / 4.0;
  at::Tensor image = at::zeros({3, 4, 4});
  image[0] = x;
  return image;
}

at::Tensor ProjectOne(const std::string& model, BackwardRule rule, int64_t y, int64_t x, float activation) {
  Probe probe(test::LoadFixtureModel(model, 4));
  TensorSource source({KnownImage()});
  DeconvOptions options;
  options.layers = {"conv2"};
  options.rule = rule;
  UnitTop unit{"conv2", 0, {{0, activation, y, x}}};
  return DeconvNet(probe).Project(source, {unit}, options)[0][0];
}

// conv1: a0 = 4x - 1, a1 = 1.5 - 4x; relu; 2x2 max pool; conv2: y = -p0 + 2 p1.
// Top-left window: p0 = r0(0,1) = 1, p1 = r1(1,0) = 1.5, so y(0,0) = 2, the seed. Backward:
// grad p0 = -2, grad p1 = +4, unpooled to (0,1) and (1,0).
//  gradient : a0(0,1) = 1 > 0 passes -2 -> dx(0,1) = 4 * -2 = -8; a1(1,0) passes 4 -> dx(1,0) = -4 * 4 = -16
//  deconvnet: relu(-2) = 0 at (0,1); relu(4) = 4 at (1,0) -> dx(1,0) = -16
//  guided   : as deconvnet (both ReLU inputs are positive).
TEST(DeconvNetTest, ProjectionsMatchHandComputedValuesForEveryRule) {
  for (const std::string model : {"deconv_known.pt", "deconv_known_inplace.pt"}) {
    at::Tensor expected = at::zeros({3, 4, 4});
    expected[0][0][1] = -8.0;
    expected[0][1][0] = -16.0;
    EXPECT_TRUE(at::allclose(ProjectOne(model, BackwardRule::kGradient, 0, 0, 2.0f), expected)) << model;
    expected[0][0][1] = 0.0;
    EXPECT_TRUE(at::allclose(ProjectOne(model, BackwardRule::kDeconvNet, 0, 0, 2.0f), expected)) << model;
    EXPECT_TRUE(at::allclose(ProjectOne(model, BackwardRule::kGuided, 0, 0, 2.0f), expected)) << model;
  }
}

// y = 2 relu(4x - 1) + 1. At (0,2), x = 0: a = -1, y = 1 (the seed); the gradient 2 reaches a negative
// ReLU input: gradient and guided stop it, DeconvNet passes relu(2) = 2 -> dx = 4 * 2 = 8.
// At (0,1), x = 0.5: a = 1, y = 3; every rule gives dx = 4 * 2 * 3 = 24.
TEST(DeconvNetTest, DeconvNetAndGuidedDifferWhereTheForwardReluWasClosed) {
  auto at_pixel = [](BackwardRule rule, int64_t x) { return ProjectOne("rules_net.pt", rule, 0, x, 0.0f)[0][0][x].item<float>(); };
  EXPECT_FLOAT_EQ(at_pixel(BackwardRule::kDeconvNet, 2), 8.0f);
  EXPECT_FLOAT_EQ(at_pixel(BackwardRule::kGuided, 2), 0.0f);
  EXPECT_FLOAT_EQ(at_pixel(BackwardRule::kGradient, 2), 0.0f);
  for (BackwardRule rule : {BackwardRule::kDeconvNet, BackwardRule::kGuided, BackwardRule::kGradient}) {
    EXPECT_FLOAT_EQ(at_pixel(rule, 1), 24.0f) << ToString(rule);
  }
}

TEST(DeconvNetTest, StreamingTopKEqualsBruteForce) {
  auto model = test::LoadFixtureModel("tinycnn_script.pt", 96);
  Probe probe(model);
  auto source = OpenImageDataset(test::Fixture("concepts"));
  DeconvOptions options;
  options.layers = {"conv4", "conv2"};
  options.units = {0, 5, 17, 31};
  options.top = 5;
  options.batch = 7;  // batches that do not divide the dataset
  ScanStats stats;
  const auto units = DeconvNet(probe).Scan(*source, options, &stats);
  ASSERT_EQ(units.size(), 8u);
  EXPECT_EQ(stats.images, source->size());
  // Brute force: every image alone, every activation kept.
  std::map<std::string, std::vector<at::Tensor>> maps;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < source->size(); ++i) {
    const at::Tensor image = source->Load(i).unsqueeze(0);
    const ProbeOutput out = probe.Run(ViewSpec{{"conv4", "conv2"}, false}, model->Preprocess(image));
    maps["conv4"].push_back(out.taps[0][0]);
    maps["conv2"].push_back(out.taps[1][0]);
  }
  for (const UnitTop& unit : units) {
    const at::Tensor all = at::stack(maps[unit.layer]).select(1, unit.unit);  // [N, H, W]
    const auto [maxima, where] = all.flatten(1).max(1);
    const auto [values, order] = maxima.topk(options.top);
    ASSERT_EQ(unit.top.size(), 5u);
    for (int64_t r = 0; r < options.top; ++r) {
      EXPECT_NEAR(unit.top[r].activation, values[r].item<float>(), 1e-4) << unit.layer << ":" << unit.unit;
      const int64_t image = order[r].item<int64_t>();
      EXPECT_EQ(static_cast<int64_t>(unit.top[r].image), image) << unit.layer << ":" << unit.unit << " rank " << r;
      const int64_t position = where[image].item<int64_t>();
      EXPECT_EQ(unit.top[r].y * all.size(2) + unit.top[r].x, position);
    }
  }
}

TEST(DeconvNetTest, ProjectionsStayInsideTheReceptiveFieldBox) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  auto source = OpenImageDataset(test::Fixture("concepts"));
  DeconvOptions options;
  options.layers = {"conv3"};
  options.units = {1, 8};
  options.top = 3;
  const auto units = DeconvNet(probe).Scan(*source, options, nullptr);
  for (BackwardRule rule : {BackwardRule::kDeconvNet, BackwardRule::kGradient}) {
    options.rule = rule;
    const auto projections = DeconvNet(probe).Project(*source, units, options);
    const ReceptiveField& field = probe.Find("conv3").receptive_field;
    for (size_t u = 0; u < units.size(); ++u) {
      for (size_t r = 0; r < units[u].top.size(); ++r) {
        int64_t box[4];
        field.Box(units[u].top[r].y, units[u].top[r].x, box);
        const at::Tensor mask = projections[u][r].abs().sum(0) > 0;
        ASSERT_GT(mask.sum().item<int64_t>(), 0);
        const at::Tensor rows = mask.any(1).nonzero().flatten(), cols = mask.any(0).nonzero().flatten();
        EXPECT_GE(rows.min().item<int64_t>(), box[0]);
        EXPECT_GE(cols.min().item<int64_t>(), box[1]);
        EXPECT_LT(rows.max().item<int64_t>(), box[2]);
        EXPECT_LT(cols.max().item<int64_t>(), box[3]);
      }
    }
  }
}

TEST(DeconvNetTest, UndecodableImagesAreSkippedAndCounted) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  auto source = OpenImageDataset(test::Fixture("mixed_images"));
  ASSERT_EQ(source->size(), 4u);
  DeconvOptions options;
  options.layers = {"conv1"};
  options.top = 2;
  ScanStats stats;
  const auto units = DeconvNet(probe).Scan(*source, options, &stats);
  EXPECT_EQ(stats.images, 3u);
  ASSERT_EQ(stats.skipped.size(), 1u);
  EXPECT_NE(source->Name(stats.skipped[0].first).find("broken.jpg"), std::string::npos);
  EXPECT_EQ(units.size(), 16u);
}

TEST(DeconvNetTest, BadDatasetsAndLayersAreClearErrors) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  EXPECT_THROW(OpenImageDataset(test::Fixture("empty_images")), InputError);
  EXPECT_THROW(OpenImageDataset(test::Fixture("no_such_folder")), InputError);
  auto source = OpenImageDataset(test::Fixture("concepts"));
  DeconvOptions options;
  options.layers = {"conv5"};
  options.seed_from = "corner";
  EXPECT_THROW(DeconvNet(probe).Scan(*source, options, nullptr), UsageError);
  options.seed_from = "max";
  options.position = {1, 1};  // needs --seed-from position
  EXPECT_THROW(DeconvNet(probe).Scan(*source, options, nullptr), UsageError);
  options.position.clear();
  options.units = {128};
  EXPECT_THROW(DeconvNet(probe).Scan(*source, options, nullptr), UsageError);
}

TEST(DeconvNetTest, StrongestUnitsOfOneImage) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  auto source = OpenImageDataset(test::Fixture("concepts"));
  const at::Tensor input = probe.model().Preprocess(source->Load(0).unsqueeze(0));
  const auto units = DeconvNet(probe).ImageUnits(input, "conv5", {}, 4);
  ASSERT_EQ(units.size(), 4u);
  for (size_t i = 1; i < units.size(); ++i) EXPECT_GE(units[i - 1].top[0].activation, units[i].top[0].activation);
  // Units asked for are those units, in that order, at their maximum in this image.
  const auto chosen = DeconvNet(probe).ImageUnits(input, "conv5", {5, 2}, 4);
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_EQ(chosen[0].unit, 5);
  EXPECT_EQ(chosen[1].unit, 2);
  at::NoGradGuard no_grad;
  const at::Tensor maps = probe.Run(ViewSpec{{"conv5"}, false}, input).taps[0][0];
  EXPECT_EQ(chosen[0].top[0].activation, maps[5].max().item<float>());
  EXPECT_THROW(DeconvNet(probe).ImageUnits(input, "conv5", {4096}, 4), UsageError);
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

// The class output of a fixture model: the last tappable [N, C] layer with as many units as logits.
std::string ClassLayer(const Probe& probe, int64_t classes) {
  for (auto it = probe.layers().rbegin(); it != probe.layers().rend(); ++it) {
    if (it->tappable && it->shape.size() == 2 && it->units == classes) return it->name;
  }
  return "";
}

// Class targets (saliency, guided backpropagation, DeconvNet of one logit) and Captum's sum seed equal the
// eager-PyTorch references of models/reference_rules.py (custom autograd functions at every ReLU), on
// every fixture architecture, scripted and traced: d logit / d input for logit 7 and for the smallest
// (negative) logit, whose seed of 1 is not its value, and d sum(channel 0 of the mid layer) / d input.
// 1e-5 relative; googlenet's random-weight input gradients depend on the convolution algorithm far more
// than other networks' (probe_test.cpp, GradientTolerance: 1.5e-3 between oneDNN and im2col), 2e-2.
TEST(DeconvNetTest, ClassTargetsAndSeedsEqualPythonReferences) {
  for (const std::string arch : {"tinycnn", "alexnet", "resnet18", "mobilenet_v2", "vgg16", "googlenet"}) {
    for (const std::string mode : {"script", "trace"}) {
      const std::string stem = arch + "_" + mode;
      const test::Reference reference = test::LoadReference(test::Fixture(stem + "_ref.pt"));
      Probe probe(test::LoadFixtureModel(stem + ".pt", 64));
      const at::Tensor input = reference.at("input").toTensor();
      const at::Tensor output = reference.at("output").toTensor();
      const std::string fc = ClassLayer(probe, output.size(1));
      ASSERT_FALSE(fc.empty()) << stem;
      const int64_t negative = reference.at("neglogit_index").toInt();
      ASSERT_LT(output[0][negative].item<float>(), 0.0f) << stem;
      DeconvNet method(probe);
      const double tolerance = arch == "googlenet" ? 2e-2 : 1e-5;
      for (const std::string rule : {"gradient", "deconvnet", "guided"}) {
        DeconvOptions options;
        options.layers = {fc};
        options.rule = ParseBackwardRule(rule);
        const auto units = method.ImageUnits(input, fc, {reference.at("logit_index").toInt(), negative}, 1);
        EXPECT_NEAR(units[1].top[0].activation, output[0][negative].item<float>(), 1e-4) << stem;
        const auto projections = method.ProjectInput(input, units, options);  // seed "auto": 1 for a class
        for (const auto& [index, key] : {std::pair<size_t, std::string>{0, "logit"}, {1, "neglogit"}}) {
          const at::Tensor expected = reference.at("grad:" + rule + ":" + key).toTensor()[0];
          EXPECT_LT(test::RelativeError(projections[index], expected), tolerance) << stem << " " << rule << " " << key;
        }
        // Captum's sum selector over one feature map: d sum(mid[:, 0]) / d input.
        const std::string mid = reference.at("mid_layer").toStringRef();
        options.layers = {mid};
        options.seed_from = "sum";
        const auto sum = method.ProjectInput(input, {{probe.Find(mid).name, 0, {{0, 0.0f, 0, 0}}}}, options);
        EXPECT_LT(test::RelativeError(sum[0], reference.at("grad:" + rule + ":mid0").toTensor()[0]), tolerance)
            << stem << " " << rule << " mid0";
      }
    }
  }
}

// Seeds at a position: one at (y, x) is the gradient of that activation; max is it scaled by the
// activation; the position must lie in the map.
TEST(DeconvNetTest, PositionSeedIsTheActivationsGradient) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  at::manual_seed(0);
  const at::Tensor input = at::randn({1, 3, 64, 64});
  DeconvOptions options;
  options.layers = {"conv3"};
  options.rule = BackwardRule::kGradient;
  options.seed_from = "position";
  options.position = {2, 3};
  DeconvNet method(probe);
  const auto units = method.ImageUnits(input, "conv3", {4}, 1);
  const at::Tensor ours = method.ProjectInput(input, units, options)[0];
  const at::Tensor x = input.clone().requires_grad_(true);
  const at::Tensor value = probe.Run(ViewSpec{{"conv3"}, false}, x).taps[0][0][4][2][3];
  value.backward();
  EXPECT_LT(test::RelativeError(ours, x.grad()[0]), 1e-6);
  options.position = {200, 3};
  EXPECT_THROW(method.ProjectInput(input, units, options), UsageError);
  options.position.clear();
  options.seed_from = "max";
  const at::Tensor scaled = method.ProjectInput(input, units, options)[0];
  options.seed_from = "position";
  const at::Tensor one = method.ProjectInput(input, units, options)[0];
  EXPECT_LT(test::RelativeError(scaled, one * units[0].top[0].activation), 1e-6);
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

// The rules on silu, gelu (exact and tanh), hardswish, hardsigmoid, elu, selu, celu, leaky_relu and mish
// equal a Python reference written from their definitions with custom autograd functions
// (tests/fixtures/make_fixtures.py, ActivationRule), and the view reports covering every one of them.
TEST(DeconvNetTest, RulesOnSmoothActivationsEqualThePythonReference) {
  Probe probe(test::LoadFixtureModel("activations_net.pt", 12));
  const test::Reference reference = test::LoadReference(test::Fixture("activations_net_ref.pt"));
  const at::Tensor input = reference.at("input").toTensor();
  for (BackwardRule rule : {BackwardRule::kGradient, BackwardRule::kDeconvNet, BackwardRule::kGuided}) {
    const at::Tensor x = input.clone().requires_grad_(true);
    ViewSpec spec{{"body.20"}, false};
    spec.rule = rule;
    probe.Run(spec, x).taps[0][0][0].sum().backward();
    const at::Tensor expected = reference.at("grad:" + ToString(rule)).toTensor();
    const double scale = expected.abs().max().item<double>();
    EXPECT_LT((x.grad() - expected).abs().max().item<double>(), 1e-4 * scale) << ToString(rule);
  }
  const RuleCoverage coverage = probe.Coverage(ViewSpec{{"body.20"}, false});
  EXPECT_EQ(coverage.covered_count(), 10) << coverage.Describe();
  for (const char* name : {"silu", "gelu", "gelu(tanh)", "hardswish", "hardsigmoid", "leaky_relu", "mish"}) {
    EXPECT_EQ(coverage.covered.count(name), 1u) << name << ": " << coverage.Describe();
  }
  EXPECT_EQ(coverage.covered.at("elu"), 3) << coverage.Describe();  // elu, selu, celu
  EXPECT_TRUE(coverage.plain_gradient.empty()) << coverage.Describe();
  // Truncation: in front of body.2 only the first activation (silu) remains.
  EXPECT_EQ(probe.Coverage(ViewSpec{{"body.2"}, false}).covered_count(), 1);

  Probe tanh_only(test::LoadFixtureModel("tanh_net.pt", 12));
  const RuleCoverage none = tanh_only.Coverage(ViewSpec{{"body.2"}, false});
  EXPECT_EQ(none.covered_count(), 0);
  EXPECT_EQ(none.plain_gradient.at("tanh"), 1);
}

// The scan in bf16 (issue 21): the bundled model's top-9 lists of conv3 and conv5 keep at least 95% of
// fp32's (unit, image) entries (measured: 99.2% on the 60 fixture images, 98.7% on 1,000 generated
// ones); fp16 is refused on a CPU, bf16 where the CPU has no native bfloat16.
TEST(DeconvNetTest, Bf16ScanKeepsTheTopImages) {
  auto model = test::LoadFixtureModel("tinycnn_script.pt", 96);
  Probe probe(model);
  auto source = OpenImageDataset(test::Fixture("concepts"));
  DeconvOptions options;
  options.layers = {"conv3", "conv5"};
  options.scan_precision = Precision::kFp16;
  EXPECT_THROW(DeconvNet(probe).Scan(*source, options, nullptr), UsageError);
  if (CpuBf16Flag().empty()) {
    options.scan_precision = Precision::kBf16;
    EXPECT_THROW(DeconvNet(probe).Scan(*source, options, nullptr), UsageError);
    GTEST_SKIP() << "this CPU has no native bfloat16";
  }
  options.scan_precision = Precision::kFp32;
  const std::vector<UnitTop> exact = DeconvNet(probe).Scan(*source, options, nullptr);
  options.scan_precision = Precision::kBf16;
  const std::vector<UnitTop> reduced = DeconvNet(probe).Scan(*source, options, nullptr);
  ASSERT_EQ(exact.size(), reduced.size());
  size_t kept = 0, entries = 0;
  for (size_t u = 0; u < exact.size(); ++u) {
    std::set<size_t> images;
    for (const TopActivation& entry : reduced[u].top) images.insert(entry.image);
    for (const TopActivation& entry : exact[u].top) kept += images.count(entry.image);
    entries += exact[u].top.size();
  }
  EXPECT_GE(static_cast<double>(kept), 0.95 * static_cast<double>(entries)) << kept << " of " << entries;
}

}  // namespace
}  // namespace cnnviz
