// Activation maximization: known answers on hand-set detectors, the objective rises, batching and
// seeds do not change results, bad requests fail clearly.
#include "cnnviz/methods/activation_maximization.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "cnnviz/core/error.h"
#include "test_util.h"

namespace cnnviz {
namespace {

ActMaxOptions Quick(const std::string& layer, std::vector<int64_t> units, int64_t steps, int64_t size) {
  ActMaxOptions options;
  options.layer = layer;
  options.units = std::move(units);
  options.render.steps = steps;
  options.render.record_every = 4;
  options.param.height = options.param.width = size;
  return options;
}

TEST(ActivationMaximizationTest, RedDetectorYieldsARedImage) {
  Probe probe(test::LoadFixtureModel("detectors.pt", 64));
  ActMaxOptions pixel = Quick("relu", {0}, 64, 64);
  pixel.param.kind = "pixel";
  pixel.param.decorrelate = false;  // decorrelated colours reach pure red more slowly
  at::Tensor mean = ActivationMaximization(probe).Run(pixel).images[0].mean(at::IntArrayRef{1, 2});
  EXPECT_GT(mean[0].item<float>(), 0.8f);
  EXPECT_LT(mean[1].item<float>(), 0.25f);
  EXPECT_LT(mean[2].item<float>(), 0.25f);
  // The Fourier parameterization moves more slowly but the same way.
  mean = ActivationMaximization(probe).Run(Quick("relu", {0}, 256, 64)).images[0].mean(at::IntArrayRef{1, 2});
  EXPECT_GT(mean[0].item<float>() - std::max(mean[1].item<float>(), mean[2].item<float>()), 0.3f);
}

// Energy of horizontal (across columns) over vertical (across rows) differences of the grey image.
double VerticalStructure(const at::Tensor& image) {
  const at::Tensor grey = image.mean(0);
  const double across_columns = (grey.slice(1, 1) - grey.slice(1, 0, -1)).pow(2).mean().item<double>();
  const double across_rows = (grey.slice(0, 1) - grey.slice(0, 0, -1)).pow(2).mean().item<double>();
  return across_columns / across_rows;
}

TEST(ActivationMaximizationTest, LineDetectorsYieldLinesOfTheirOrientation) {
  Probe probe(test::LoadFixtureModel("detectors.pt", 64));
  ActMaxOptions options = Quick("relu", {1, 2}, 64, 64);
  options.param.kind = "pixel";
  const ActMaxResult result = ActivationMaximization(probe).Run(options);
  EXPECT_GT(VerticalStructure(result.images[0]), 3.0);        // vertical-line unit
  EXPECT_LT(VerticalStructure(result.images[1]), 1.0 / 3.0);  // horizontal-line unit
}

class ObjectiveRisesTest : public ::testing::TestWithParam<std::tuple<std::string, std::string, bool>> {};

TEST_P(ObjectiveRisesTest, ForEveryParameterization) {
  const auto& [model, kind, decorrelate] = GetParam();
  const bool bundled = model == "tinycnn_script";
  Probe probe(test::LoadFixtureModel(model + ".pt", 64));
  ActMaxOptions options = Quick(bundled ? "conv4" : "layer2", {3, 11}, 48, 64);
  options.param.kind = kind;
  options.param.decorrelate = decorrelate;
  const ActMaxResult result = ActivationMaximization(probe).Run(options);
  for (const UnitImage& unit : result.units) {
    ASSERT_GE(unit.curve.size(), 3u);
    EXPECT_GT(unit.curve.back(), unit.curve.front()) << unit.label;
    EXPECT_GT(unit.final_value, unit.initial_value) << unit.label;
  }
}

INSTANTIATE_TEST_SUITE_P(Parameterizations, ObjectiveRisesTest,
                         ::testing::Combine(::testing::Values("tinycnn_script", "resnet18_script"),
                                            ::testing::Values("fft", "pixel"), ::testing::Bool()));

TEST(ActivationMaximizationTest, BatchedEqualsOneAtATime) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("conv3", {1, 5, 9}, 12, 48);
  options.batch = 3;
  const ActMaxResult together = ActivationMaximization(probe).Run(options);
  options.batch = 1;
  const ActMaxResult alone = ActivationMaximization(probe).Run(options);
  // Batched and single convolutions round differently (~1e-7); Adam turns near-zero gradient noise into
  // full-size steps, so a few pixels may drift, but images and objectives agree.
  EXPECT_LT((together.images - alone.images).abs().mean().item<float>(), 2e-3f);
  EXPECT_LT((together.images - alone.images).abs().max().item<float>(), 0.05f);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(together.units[i].final_value, alone.units[i].final_value,
                1e-2 * (1 + std::abs(alone.units[i].final_value)));
  }
}

// Computing each image's own channel alone (the default on a CPU, where the layer is a convolution and
// ReLU) gives what computing the whole layer gives, up to the rounding of a different convolution loop
// (which Adam amplifies where gradients are near zero, as in BatchedEqualsOneAtATime: few steps here).
TEST(ActivationMaximizationTest, OwnChannelsAloneEqualTheWholeLayer) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  for (const std::string layer : {"conv3", "conv5"}) {
    ActMaxOptions options = Quick(layer, {1, 5, 9}, 6, 48);
    options.batch = 3;
    options.relu_redirect_steps = 0;  // redirected steps run the whole layer either way
    const ActMaxResult selected = ActivationMaximization(probe).Run(options);
    options.select_channels = false;
    const ActMaxResult whole = ActivationMaximization(probe).Run(options);
    EXPECT_TRUE(selected.selected_channels);
    EXPECT_FALSE(whole.selected_channels);
    EXPECT_LT((selected.images - whole.images).abs().mean().item<float>(), 3e-3f) << layer;  // 1.1e-3 measured
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(selected.units[i].final_value, whole.units[i].final_value,
                  1e-2 * (1 + std::abs(whole.units[i].final_value))) << layer;
      EXPECT_EQ(selected.units[i].curve.size(), whole.units[i].curve.size());
    }
  }
  // Objectives that read more than one channel compute the whole layer.
  ActMaxOptions expression = Quick("", {}, 4, 48);
  expression.expression = "conv3:1 + conv3:2";
  EXPECT_FALSE(ActivationMaximization(probe).Run(expression).selected_channels);
}

// A batch is optimized as parts, each a batch of its own (sequentially, or concurrently on workers), so
// results agree with one whole-batch part up to the rounding of other convolution batch sizes; diversity
// copies stay in one part.
TEST(ActivationMaximizationTest, PartsAndWorkersDoNotChangeResults) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  auto compare = [](const ActMaxResult& a, const ActMaxResult& b) {
    ASSERT_EQ(a.units.size(), b.units.size());
    // Channels-last convolutions of different batch sizes round differently (~1e-7) and Adam turns
    // near-zero gradient noise into full-size steps: a mean pixel difference of ~3e-3 (under 1/255).
    EXPECT_LT((a.images - b.images).abs().mean().item<float>(), 5e-3f);
    for (size_t i = 0; i < a.units.size(); ++i) {
      EXPECT_EQ(a.units[i].label, b.units[i].label);
      EXPECT_NEAR(a.units[i].final_value, b.units[i].final_value, 1e-2 * (1 + std::abs(b.units[i].final_value)));
    }
  };
  ActMaxOptions options = Quick("conv3", {1, 5, 9, 12, 20}, 12, 48);
  options.batch = 5;
  options.part = 0;
  options.workers = 1;
  const ActMaxResult whole = ActivationMaximization(probe).Run(options);
  EXPECT_EQ(whole.workers, 1);
  // Parts of 1 and of 2 (2 + 2 + 1), in turn and on 2 or 3 worker threads.
  for (int64_t part : {1, 2}) {
    for (int64_t workers : {1, 2, 3}) {
      options.part = part;
      options.workers = workers;
      const ActMaxResult parted = ActivationMaximization(probe).Run(options);
      EXPECT_EQ(parted.workers, workers);
      compare(parted, whole);
    }
  }
  // Diversity copies share a part: a part of 1 is rounded up to the 3 copies.
  ActMaxOptions diverse = Quick("conv3", {4, 6}, 12, 48);
  diverse.diversity = 3;
  diverse.part = 0;
  const ActMaxResult together = ActivationMaximization(probe).Run(diverse);
  diverse.part = 1;
  diverse.workers = 2;
  compare(ActivationMaximization(probe).Run(diverse), together);
  ActMaxOptions bad = options;
  bad.part = -2;
  EXPECT_THROW(ActivationMaximization(probe).Run(bad), UsageError);
  bad.part = 0;
  bad.workers = -1;
  EXPECT_THROW(ActivationMaximization(probe).Run(bad), UsageError);
}

TEST(ActivationMaximizationTest, SameSeedSameImagesOtherSeedOtherImages) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("conv2", {4}, 6, 48);
  const at::Tensor first = ActivationMaximization(probe).Run(options).images;
  EXPECT_TRUE(at::equal(first, ActivationMaximization(probe).Run(options).images));
  options.seed = 1;
  EXPECT_FALSE(at::equal(first, ActivationMaximization(probe).Run(options).images));
}

TEST(ActivationMaximizationTest, DiversityGivesDifferentImagesPerUnit) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("conv3", {2}, 16, 48);
  options.diversity = 3;
  const ActMaxResult result = ActivationMaximization(probe).Run(options);
  ASSERT_EQ(result.units.size(), 3u);
  EXPECT_EQ(result.units[1].label, "conv3:2#1");
  EXPECT_GT((result.images[0] - result.images[1]).abs().mean().item<float>(), 1e-3f);
}

// The copies end unlike each other (their Gram matrices, the term's own measure) and every one still
// excites the unit; final_value is the objective alone. Without the term they stay alike.
TEST(ActivationMaximizationTest, DiversityCopiesDifferAndEachExcitesTheUnit) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("conv4", {7}, 160, 64);
  options.diversity = 4;
  const ActMaxResult diverse = ActivationMaximization(probe).Run(options);
  options.diversity_weight = 0;
  const ActMaxResult alike = ActivationMaximization(probe).Run(options);
  ASSERT_EQ(diverse.units.size(), 4u);
  double best = 0, similarity = 0, alike_similarity = 0;
  for (const auto& unit : diverse.units) best = std::max<double>(best, unit.final_value);
  for (size_t i = 0; i < 4; ++i) {
    similarity += diverse.units[i].diversity_term / 4;
    alike_similarity += alike.units[i].diversity_term / 4;
    EXPECT_GT(diverse.units[i].final_value, 0.25 * best) << diverse.units[i].label;
  }
  EXPECT_GT(alike_similarity, 0.95);
  EXPECT_LT(similarity, 0.8);
  // final_value is the objective alone: the channel's mean, evaluated here directly.
  const ProbeOutput out = probe.Run(ViewSpec{{"conv4"}, false}, probe.model().Preprocess(diverse.images));
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(out.taps[0][i][7].mean().item<float>(), diverse.units[i].final_value, 1e-4);
  }
}

TEST(ActivationMaximizationTest, ExpressionsAndClassObjectives) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("", {}, 8, 48);
  options.expression = "conv5:3 + 0.5*conv4:7 - 0.1*tv";
  ActMaxResult result = ActivationMaximization(probe).Run(options);
  ASSERT_EQ(result.units.size(), 1u);
  EXPECT_EQ(result.units[0].objective, "conv5:3 + 0.5*conv4:7 - 0.1*tv");
  ActMaxOptions classes = Quick("", {2, 5}, 8, 48);
  classes.objective = "class";
  result = ActivationMaximization(probe).Run(classes);
  EXPECT_EQ(result.units.size(), 2u);
  EXPECT_EQ(result.units[1].objective, "class:5");
}

TEST(ActivationMaximizationTest, BadRequestsAreUsageErrors) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActivationMaximization method(probe);
  EXPECT_THROW(method.Run(Quick("conv5", {128}, 2, 32)), UsageError);  // conv5 has 128 units
  EXPECT_THROW(method.Run(Quick("conv9", {1}, 2, 32)), UsageError);
  ActMaxOptions bad_expression = Quick("", {}, 2, 32);
  bad_expression.expression = "conv5:1 +";
  EXPECT_THROW(method.Run(bad_expression), UsageError);
  ActMaxOptions bad_class = Quick("", {12}, 2, 32);
  bad_class.objective = "class";
  EXPECT_THROW(method.Run(bad_class), UsageError);  // 12 classes: 0-11
  ActMaxOptions pixel_ops = Quick("conv2", {1}, 2, 32);
  pixel_ops.render.blur_every = 2;
  EXPECT_THROW(method.Run(pixel_ops), UsageError);  // blur needs --param pixel
}

TEST(ActivationMaximizationTest, YosinskiRegularizersRunOnPixels) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("conv2", {1}, 8, 48);
  options.param.kind = "pixel";
  options.render.decay = 0.01;
  options.render.blur_every = 4;
  options.render.clip_percentile = 10;
  const ActMaxResult result = ActivationMaximization(probe).Run(options);
  EXPECT_TRUE(at::isfinite(result.images).all().item<bool>());
}

// Lucid's redirected ReLU gradient: the bundled model's conv5 unit 9 is silent on the starting image,
// so its true gradient is zero and it stays flat grey; with the first steps redirected it takes off.
// The redirected steps read the whole layer, and afterwards the own-channel path takes over.
TEST(ActivationMaximizationTest, ARedirectedReluGradientStartsASilentUnit) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  ActMaxOptions options = Quick("conv5", {9}, 32, 96);
  options.relu_redirect_steps = 0;
  const ActMaxResult dead = ActivationMaximization(probe).Run(options);
  EXPECT_EQ(dead.units[0].initial_value, 0.0f);
  EXPECT_EQ(dead.units[0].final_value, 0.0f);
  options.relu_redirect_steps = 16;
  const ActMaxResult alive = ActivationMaximization(probe).Run(options);
  EXPECT_EQ(alive.units[0].initial_value, 0.0f);
  EXPECT_GT(alive.units[0].final_value, 0.5f);
  EXPECT_TRUE(alive.selected_channels);
  options.relu_redirect_steps = -1;
  EXPECT_THROW(ActivationMaximization(probe).Run(options), UsageError);
}

// The rule itself, against Lucid's formula on a hand-made case: an element whose true gradient is zero
// everywhere gets the incoming gradient except where it would push a negative input lower (a descent
// step: grad > 0); an element with any true gradient gets the true gradient.
TEST(ActivationMaximizationTest, RedirectedRuleFollowsLucid) {
  Probe probe(test::LoadFixtureModel("detectors.pt", 8));
  const LayerInfo& relu = probe.Find("relu");
  ASSERT_EQ(relu.shape.size(), 4u);
  at::manual_seed(1);
  const at::Tensor input = at::randn({2, 3, 8, 8});
  ViewSpec plain{{"relu"}, false};
  ViewSpec redirected = plain;
  redirected.rule = BackwardRule::kRedirected;
  const at::Tensor seed = at::randn(probe.Run(plain, input).taps[0].sizes());
  auto gradient = [&](const ViewSpec& spec, const at::Tensor& x) {
    at::Tensor leaf = x.clone().requires_grad_(true);
    (probe.Run(spec, leaf).taps[0] * seed).sum().backward();
    return leaf.grad();
  };
  // Element 0 as is; element 1 black, so every unit of it sits at 0, where the ReLU passes nothing.
  at::Tensor x = input.clone();
  x[1].fill_(0.0);
  const at::Tensor ours = gradient(redirected, x), truth = gradient(plain, x);
  EXPECT_TRUE(at::allclose(ours[0], truth[0]));  // some gradient passes: the true one
  EXPECT_EQ(truth[1].abs().sum().item<float>(), 0.0f);
  EXPECT_GT(ours[1].abs().sum().item<float>(), 0.0f);  // silent: redirected
}

// Reduced precision (bf16 network, float32 image, Adam and objective): the optimization ends as close to
// fp32's as fp32 itself with another seed, with the Probe's rewrites (own channels, fused ReLU + pooling)
// still taken. Measured (the bundled model via the CLI), conv3 units 0-15, 64 steps at 64 px: bf16/fp32
// mean final objective 1.007, median per-unit difference 0.7% (another seed: 1.8%), image correlation
// with fp32's 0.40 (another seed: 0.18).
TEST(ActivationMaximizationTest, Bf16EndsAsCloseToFp32AsAnotherSeed) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 64));
  ActMaxOptions options = Quick("conv3", {}, 64, 64);
  for (int64_t unit = 0; unit < 16; ++unit) options.units.push_back(unit);
  options.precision = Precision::kFp16;
  EXPECT_THROW(ActivationMaximization(probe).Run(options), UsageError);
  if (CpuBf16Flag().empty()) GTEST_SKIP() << "this CPU has no native bfloat16";
  options.precision = Precision::kFp32;
  const ActMaxResult exact = ActivationMaximization(probe).Run(options);
  options.seed = 1;
  const ActMaxResult other_seed = ActivationMaximization(probe).Run(options);
  options.seed = 0;
  options.precision = Precision::kBf16;
  const ActMaxResult reduced = ActivationMaximization(probe).Run(options);
  EXPECT_TRUE(reduced.selected_channels);
  EXPECT_FALSE(reduced.images.equal(exact.images)) << "bf16 changed nothing: did it run?";

  auto mean_final = [](const ActMaxResult& result) {
    double sum = 0;
    for (const UnitImage& unit : result.units) sum += unit.final_value;
    return sum / static_cast<double>(result.units.size());
  };
  auto median_difference = [&](const ActMaxResult& result) {
    std::vector<double> differences;
    for (size_t i = 0; i < result.units.size(); ++i) {
      differences.push_back(std::abs(result.units[i].final_value - exact.units[i].final_value) /
                            std::abs(exact.units[i].final_value));
    }
    std::sort(differences.begin(), differences.end());
    return differences[differences.size() / 2];
  };
  auto mean_correlation = [&](const ActMaxResult& result) {
    double sum = 0;
    for (int64_t i = 0; i < exact.images.size(0); ++i) {
      const at::Tensor a = exact.images[i].flatten() - exact.images[i].mean();
      const at::Tensor b = result.images[i].flatten() - result.images[i].mean();
      sum += (a * b).sum().item<double>() / (a.norm() * b.norm()).item<double>();
    }
    return sum / static_cast<double>(exact.images.size(0));
  };
  for (size_t i = 0; i < reduced.units.size(); ++i) {
    // Two units (conv3:1, conv3:8) end near their start in fp32 too; every unit fp32 raises bf16 raises.
    if (exact.units[i].final_value > 1.1 * exact.units[i].initial_value + 0.01) {
      EXPECT_GT(reduced.units[i].final_value, reduced.units[i].initial_value) << reduced.units[i].label;
    }
    EXPECT_EQ(reduced.units[i].initial_value, exact.units[i].initial_value) << "initial values are fp32's";
  }
  EXPECT_NEAR(mean_final(reduced) / mean_final(exact), 1.0, 0.05);
  EXPECT_LT(median_difference(reduced), 0.05);
  EXPECT_GT(mean_correlation(reduced), mean_correlation(other_seed));

  // A torchvision architecture (batch norm, residual additions) optimizes in bf16 too.
  Probe resnet(test::LoadFixtureModel("resnet18_script.pt", 64));
  ActMaxOptions deep = Quick("layer2", {0, 1, 2, 3}, 16, 64);
  deep.precision = Precision::kBf16;
  for (const UnitImage& unit : ActivationMaximization(resnet).Run(deep).units) {
    EXPECT_GT(unit.final_value, unit.initial_value) << unit.label;
  }
}

}  // namespace
}  // namespace cnnviz
