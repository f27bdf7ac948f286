// Network inversion (Mahendran & Vedaldi): regularizer values and gradients; the paper's algorithm
// (paper_mode): the objective falls, batching and seeds change nothing, early stop and a fixed rate; the
// default mode (priors x0.01, L-BFGS coarse to fine): the energy falls, batching and seeds; bad input.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/network_inversion.h"
#include "test_util.h"

namespace cnnviz {
namespace {

// A smooth generated picture (coloured Gaussian blobs on a gradient): the natural-image statistics the
// paper's priors are calibrated for (B = 80, V = B/6.5).
at::Tensor SmoothImage(int64_t size, int seed) {
  at::Generator generator = at::detail::createCPUGenerator(static_cast<uint64_t>(seed));
  const at::Tensor t = at::linspace(0, 1, size);
  const at::Tensor yy = t.view({size, 1}).expand({size, size}), xx = t.view({1, size}).expand({size, size});
  at::Tensor image = at::stack({0.3 + 0.4 * yy, 0.5 - 0.2 * xx, 0.4 + 0.2 * xx * yy});
  for (int blob = 0; blob < 4; ++blob) {
    const at::Tensor colour = at::rand({3, 1, 1}, generator);
    const at::Tensor p = at::rand({3}, generator);
    const double cy = p[0].item<double>(), cx = p[1].item<double>(), r = 0.08 + 0.15 * p[2].item<double>();
    const at::Tensor weight = at::exp(-((yy - cy).pow(2) + (xx - cx).pow(2)) / (2 * r * r));
    image = image * (1 - weight) + colour * weight;
  }
  return image.clamp(0, 1);
}

TEST(Regularizers, HandComputedValues) {
  // One channel, 2x2: [[0, 1], [2, 4]]. dx = [[1, 0], [2, 0]], dy = [[2, 3], [0, 0]].
  const at::Tensor x = at::tensor({0.0, 1.0, 2.0, 4.0}, at::kDouble).view({1, 1, 2, 2});
  // β = 2: (1+4) + (0+9) + (4+0) + 0 = 18. β = 1: sqrt(5) + 3 + 2 + 0.
  EXPECT_DOUBLE_EQ(TotalVariation(x, 2.0).item<double>(), 18.0);
  EXPECT_NEAR(TotalVariation(x, 1.0).item<double>(), std::sqrt(5.0) + 5.0, 1e-4);
  // α = 6: 0 + 1 + 64 + 4096.
  EXPECT_DOUBLE_EQ(AlphaNorm(x, 6.0).item<double>(), 4161.0);
  EXPECT_DOUBLE_EQ(AlphaNorm(-x, 3.0).item<double>(), 0.0 + 1.0 + 8.0 + 64.0);
}

// Central finite differences in double precision against autograd, for every coordinate.
void ExpectGradientMatches(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x0) {
  at::Tensor x = x0.clone().requires_grad_(true);
  f(x).sum().backward();
  const at::Tensor analytic = x.grad().flatten();
  const at::Tensor flat = x0.flatten();
  const double h = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    at::Tensor plus = flat.clone(), minus = flat.clone();
    plus[i] += h;
    minus[i] -= h;
    const double numeric = (f(plus.view_as(x0)).sum().item<double>() - f(minus.view_as(x0)).sum().item<double>()) / (2 * h);
    EXPECT_NEAR(analytic[i].item<double>(), numeric, 1e-5 * (1.0 + std::abs(numeric))) << "coordinate " << i;
  }
}

TEST(Regularizers, GradientsMatchFiniteDifferences) {
  at::Generator generator = at::detail::createCPUGenerator(3);
  const at::Tensor x = at::randn({2, 3, 4, 5}, generator, at::TensorOptions().dtype(at::kDouble));
  for (double alpha : {6.0, 2.0, 3.0}) ExpectGradientMatches([&](const at::Tensor& v) { return AlphaNorm(v, alpha); }, x);
  for (double beta : {2.0, 1.5, 1.0}) ExpectGradientMatches([&](const at::Tensor& v) { return TotalVariation(v, beta); }, x);
}

TEST(Regularizers, DefaultTvWeightGrowsWithDepth) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  // tinycnn: 5 convolutions and a linear classifier. conv1 is 1/6 deep, conv2 and conv3 2/6 and 3/6.
  EXPECT_EQ(DefaultTvWeight(probe, "conv1"), 1.0);
  EXPECT_EQ(DefaultTvWeight(probe, "conv2"), 10.0);
  EXPECT_EQ(DefaultTvWeight(probe, "conv3"), 10.0);
  EXPECT_EQ(DefaultTvWeight(probe, "conv5"), 100.0);
}

class TinyInversion : public ::testing::Test {
 protected:
  TinyInversion() : probe_(test::LoadFixtureModel("tinycnn_script.pt", 96)) {}
  // The paper's algorithm, as the tests of its schedule need.
  static InversionOptions Paper() {
    InversionOptions options;
    options.paper_mode = true;
    return options;
  }
  Probe probe_;
};

TEST_F(TinyInversion, PaperObjectiveFallsAndTheErrorWithIt) {
  InversionOptions options = Paper();
  options.layers = {"conv3"};
  options.steps = 120;
  const InversionResult result = NetworkInversion(probe_).Run(SmoothImage(96, 1), options);
  const LayerInversion& layer = result.layers[0];
  ASSERT_GE(layer.objective_curve.size(), 3u);
  EXPECT_LT(layer.objective_curve.back(), 0.05 * layer.objective_curve.front());
  EXPECT_LT(layer.error_curve.back(), 0.5 * layer.error_curve.front());
  for (size_t i = 1; i < layer.objective_curve.size(); ++i) {
    // Momentum may overshoot briefly, never blow up.
    EXPECT_LT(layer.objective_curve[i], 2.0 * layer.objective_curve[i - 1] + 1e-3) << "record " << i;
  }
  EXPECT_LT(layer.feature_error, 0.2);
  EXPECT_GT(layer.learning_rate, 0.0);
  EXPECT_EQ(layer.iterations, 120);
}

// --lr auto's curvature: exact Hessian-vector products where double backward exists, finite differences
// of gradients where it does not (hardsigmoid); the two agree where both exist.
TEST_F(TinyInversion, PaperCurvatureFallsBackToFiniteDifferencesThatAgree) {
  InversionOptions options = Paper();
  options.layers = {"conv3"};
  options.steps = 1;
  const at::Tensor image = SmoothImage(96, 1);
  const LayerInversion exact = NetworkInversion(probe_).Run(image, options).layers[0];
  options.finite_difference_curvature = true;
  const LayerInversion estimated = NetworkInversion(probe_).Run(image, options).layers[0];
  EXPECT_EQ(exact.curvature_method, "double backward");
  EXPECT_EQ(estimated.curvature_method, "finite differences");
  ASSERT_GT(exact.curvature, 0.0);
  EXPECT_NEAR(estimated.curvature, exact.curvature, 0.02 * exact.curvature);

  Probe hardsigmoid(test::LoadFixtureModel("activations_net.pt", 12));  // body.9 is a Hardsigmoid
  InversionOptions fallback = Paper();
  fallback.layers = {"body.10"};
  fallback.steps = 60;
  const LayerInversion layer = NetworkInversion(hardsigmoid).Run(SmoothImage(12, 2), fallback).layers[0];
  EXPECT_EQ(layer.curvature_method, "finite differences");
  EXPECT_GT(layer.curvature, 0.0);
  EXPECT_TRUE(std::isfinite(layer.learning_rate));
  ASSERT_GE(layer.objective_curve.size(), 2u);
  EXPECT_LT(layer.objective_curve.back(), layer.objective_curve.front());
}

TEST_F(TinyInversion, PaperBatchingAndSeedsChangeNothing) {
  InversionOptions options = Paper();
  options.steps = 40;
  options.layers = {"conv1", "conv4"};
  options.seed = 5;
  const at::Tensor image = SmoothImage(96, 2);
  const InversionResult together = NetworkInversion(probe_).Run(image, options);
  options.batch = 1;
  const InversionResult apart = NetworkInversion(probe_).Run(image, options);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(together.layers[i].learning_rate, apart.layers[i].learning_rate, 1e-4 * apart.layers[i].learning_rate);
    EXPECT_LT(test::RelativeError(together.layers[i].raw, apart.layers[i].raw), 1e-3) << options.layers[i];
  }
  options.batch = 8;
  const InversionResult again = NetworkInversion(probe_).Run(image, options);
  EXPECT_TRUE(again.layers[1].raw.equal(together.layers[1].raw));
  options.seed = 6;
  const InversionResult other = NetworkInversion(probe_).Run(image, options);
  EXPECT_FALSE(other.layers[1].raw.equal(together.layers[1].raw));
}

TEST_F(TinyInversion, PaperTargetErrorStopsEarlyAndFixedRateIsUsed) {
  InversionOptions options = Paper();
  options.layers = {"conv3"};
  options.steps = 400;
  options.target_error = 0.3;
  const InversionResult result = NetworkInversion(probe_).Run(SmoothImage(96, 3), options);
  EXPECT_LT(result.layers[0].iterations, 400);
  EXPECT_LE(result.layers[0].feature_error, 0.3);

  options.target_error = 0;
  options.steps = 5;
  options.auto_learning_rate = false;
  options.learning_rate = 1e-4;
  const InversionResult fixed = NetworkInversion(probe_).Run(SmoothImage(96, 3), options);
  EXPECT_NEAR(fixed.layers[0].learning_rate, 1e-4, 1e-10);
  EXPECT_EQ(fixed.layers[0].curvature, 0.0);
}

// Default mode: L-BFGS never raises the energy within a level (the recorded energy may step at a level
// change, where the coarse image is resized once more), the feature error falls far, no learning rate.
TEST_F(TinyInversion, DefaultModeEnergyFallsAndIgnoresTheRate) {
  InversionOptions options;
  options.layers = {"conv3"};
  options.steps = 120;
  options.record_every = 1;
  const InversionResult result = NetworkInversion(probe_).Run(SmoothImage(96, 1), options);
  const LayerInversion& layer = result.layers[0];
  ASSERT_GE(layer.objective_curve.size(), 10u);
  std::string curve;
  for (size_t i = 0; i < layer.objective_curve.size(); ++i) {
    curve += std::to_string(layer.curve_steps[i]) + ":" + std::to_string(layer.objective_curve[i]) + " ";
  }
  // Measured: from 0.0052 at the start (step 0) to 0.00051.
  EXPECT_EQ(layer.curve_steps.front(), 0);
  EXPECT_LT(layer.objective_curve.back(), 0.15 * layer.objective_curve.front()) << curve;
  EXPECT_LT(layer.feature_error, 0.1);
  EXPECT_EQ(layer.learning_rate, 0.0);
  EXPECT_EQ(layer.curvature, 0.0);
  EXPECT_LE(layer.iterations, 120);
  EXPECT_EQ(layer.curve_steps.back(), layer.iterations);
  // Within a level the energy never rises; it may at the two level changes.
  int rises = 0;
  for (size_t i = 1; i < layer.objective_curve.size(); ++i) {
    rises += layer.objective_curve[i] > layer.objective_curve[i - 1] * (1 + 1e-5) + 1e-9;
  }
  EXPECT_LE(rises, 2);
}

TEST_F(TinyInversion, DefaultModeBatchingAndSeeds) {
  InversionOptions options;
  options.steps = 30;
  options.layers = {"conv1", "conv4"};
  options.seed = 5;
  const at::Tensor image = SmoothImage(96, 2);
  const InversionResult together = NetworkInversion(probe_).Run(image, options);
  options.batch = 1;
  const InversionResult apart = NetworkInversion(probe_).Run(image, options);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_LT(test::RelativeError(together.layers[i].raw, apart.layers[i].raw), 1e-4) << options.layers[i];
  }
  options.seed = 6;
  const InversionResult other = NetworkInversion(probe_).Run(image, options);
  EXPECT_FALSE(other.layers[1].raw.equal(together.layers[1].raw));
  // Fewer steps than levels: the image still comes back at full size.
  options.steps = 2;
  const InversionResult short_run = NetworkInversion(probe_).Run(image, options);
  EXPECT_EQ(short_run.layers[0].raw.sizes(), (std::vector<int64_t>{3, 96, 96}));
  EXPECT_LE(short_run.layers[0].iterations, 2);
  // The paper's algorithm gives something else.
  options.steps = 30;
  options.seed = 5;
  options.paper_mode = true;
  const InversionResult paper = NetworkInversion(probe_).Run(image, options);
  EXPECT_GT(test::RelativeError(paper.layers[0].raw, together.layers[0].raw), 1e-2);
  EXPECT_GT(paper.layers[0].learning_rate, 0.0);
}

TEST_F(TinyInversion, BadInputIsRefusedClearly) {
  InversionOptions options;
  options.layers = {"conv9"};
  EXPECT_THROW(NetworkInversion(probe_).Run(SmoothImage(96, 0), options), UsageError);
  options.layers = {"conv1"};
  EXPECT_THROW(NetworkInversion(probe_).Run(at::rand({1, 96, 96}), options), InputError);
  options.steps = 0;
  EXPECT_THROW(NetworkInversion(probe_).Run(SmoothImage(96, 0), options), UsageError);
  options.steps = 10;
  options.layers = {};
  EXPECT_THROW(NetworkInversion(probe_).Run(SmoothImage(96, 0), options), UsageError);
  options.layers = {"conv1"};
  options.levels = 0;
  EXPECT_THROW(NetworkInversion(probe_).Run(SmoothImage(96, 0), options), UsageError);
  options.levels = 3;
  options.prior_scale = -1;
  EXPECT_THROW(NetworkInversion(probe_).Run(SmoothImage(96, 0), options), UsageError);
}

// Reduced precision: the network's passes in the iterations run in bf16, the targets and the final
// evaluation in fp32, so the reported errors compare. Measured (bundled conv2/conv4/conv5, 200 steps):
// default mode's feature errors 0.080/0.118/0.104 in fp32 against 0.083/0.113/0.108 in bf16.
TEST_F(TinyInversion, Bf16ReachesFp32sFeatureErrorsInBothModes) {
  for (bool paper : {false, true}) {
    InversionOptions options = paper ? Paper() : InversionOptions();
    options.layers = {"conv2", "conv4"};
    options.steps = 100;
    options.precision = Precision::kFp16;
    EXPECT_THROW(NetworkInversion(probe_).Run(SmoothImage(96, 1), options), UsageError);
    if (CpuBf16Flag().empty()) GTEST_SKIP() << "this CPU has no native bfloat16";
    options.precision = Precision::kFp32;
    const InversionResult exact = NetworkInversion(probe_).Run(SmoothImage(96, 1), options);
    options.precision = Precision::kBf16;
    const InversionResult reduced = NetworkInversion(probe_).Run(SmoothImage(96, 1), options);
    for (size_t i = 0; i < exact.layers.size(); ++i) {
      const LayerInversion &a = exact.layers[i], &b = reduced.layers[i];
      EXPECT_LT(b.feature_error, 1.25 * a.feature_error + 0.01) << a.layer << (paper ? " paper" : "");
      EXPECT_NEAR(b.psnr, a.psnr, 1.5) << a.layer << (paper ? " paper" : "");
      EXPECT_FALSE(b.image.equal(a.image)) << "bf16 changed nothing: did it run?";
      if (paper) {
        EXPECT_DOUBLE_EQ(b.learning_rate, a.learning_rate) << "the curvature estimate is fp32's";
      }
    }
  }
}

}  // namespace
}  // namespace cnnviz
