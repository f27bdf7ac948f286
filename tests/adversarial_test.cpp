// Adversarial examples (issue 20, library part): FGSM equals epsilon * sign of the gradient on a
// hand-built linear model; PGD stays in its budget and the pixel range for both norms and moves the
// prediction; a zero perturbation moves no layer; bad requests are usage errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/adversarial.h"
#include "cnnviz/model/probe.h"
#include "test_util.h"

namespace cnnviz {
namespace {

// logits = W x + b with two classes: d CE(label) / dx = (p - onehot(label)) W = (1 - p_label) (W_other - W_label),
// so the sign of the gradient is sign(W_other - W_label) wherever that difference is not zero.
TEST(AdversarialTest, FgsmOnALinearModelIsEpsilonTimesTheKnownSign) {
  auto model = test::LoadFixtureModel("linear_net.pt", 8);
  Probe probe(model);
  at::manual_seed(1);
  const at::Tensor images = at::rand({4, 3, 8, 8}) * 0.5 + 0.25;  // away from the range's edges
  const at::Tensor labels = at::tensor({0, 1, 0, 1}, at::kLong);
  AttackOptions options;
  options.attack = "fgsm";
  options.epsilon = 0.1;
  const AttackResult result = AdversarialAttack(probe).Run(images, labels, options);
  // W from the model itself: logits of basis images.
  at::NoGradGuard no_grad;
  const ViewSpec view{{}, true};
  const at::Tensor bias = probe.Run(view, at::zeros({1, 3, 8, 8})).output[0];
  const at::Tensor basis = at::eye(3 * 8 * 8).view({-1, 3, 8, 8});
  const at::Tensor weights = (probe.Run(view, basis).output - bias).t();  // [2, 192]
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t label = labels[i].item<int64_t>();
    const at::Tensor sign = (weights[1 - label] - weights[label]).sign().view({3, 8, 8});
    EXPECT_TRUE(at::allclose(result.adversarial[i], images[i] + 0.1 * sign, 0, 1e-6)) << i;
  }
  // Targeted toward the other class: the same step for images labelled with the other one.
  options.target = 1;
  const AttackResult targeted = AdversarialAttack(probe).Run(images, labels, options);
  const at::Tensor toward_one = (weights[1] - weights[0]).sign().view({3, 8, 8});
  EXPECT_TRUE(at::allclose(targeted.adversarial[0], images[0] + 0.1 * toward_one, 0, 1e-6));
}

TEST(AdversarialTest, PgdStaysInItsBudgetAndThePixelRangeForBothNorms) {
  auto model = test::LoadFixtureModel("tinycnn_script.pt", 96);
  Probe probe(model);
  at::manual_seed(2);
  const at::Tensor images = at::rand({3, 3, 96, 96});
  at::Tensor predicted;
  {
    at::NoGradGuard no_grad;
    predicted = probe.Run(ViewSpec{{}, true}, model->Preprocess(images)).output.argmax(1);
  }
  for (AttackNorm norm : {AttackNorm::kLinf, AttackNorm::kL2}) {
    AttackOptions options;
    options.norm = norm;
    options.epsilon = norm == AttackNorm::kLinf ? 8.0 / 255.0 : 1.0;
    options.steps = 5;
    const AttackResult result = AdversarialAttack(probe).Run(images, predicted, options);
    const at::Tensor delta = result.adversarial - images;
    EXPECT_GE(result.adversarial.min().item<float>(), 0.0f);
    EXPECT_LE(result.adversarial.max().item<float>(), 1.0f);
    if (norm == AttackNorm::kLinf) {
      EXPECT_LE(delta.abs().max().item<double>(), options.epsilon + 1e-6);
    } else {
      EXPECT_LE(delta.flatten(1).norm(2, 1).max().item<double>(), options.epsilon + 1e-5);
    }
    EXPECT_GT(delta.abs().max().item<double>(), 0.0);
    // The attack raises the loss of the clean prediction.
    const at::Tensor clean = at::cross_entropy_loss(result.clean_logits, predicted);
    const at::Tensor attacked = at::cross_entropy_loss(result.adversarial_logits, predicted);
    EXPECT_GT(attacked.item<double>(), clean.item<double>());
    EXPECT_TRUE(AdversarialAttack(probe).Run(images, predicted, options).adversarial.equal(result.adversarial));  // seeded
  }
}

TEST(AdversarialTest, LayerDivergencesAreZeroWithoutAPerturbationAndBadRequestsRefused) {
  auto model = test::LoadFixtureModel("tinycnn_script.pt", 96);
  Probe probe(model);
  at::manual_seed(3);
  const at::Tensor images = at::rand({2, 3, 96, 96});
  for (const LayerDivergence& d : LayerDivergences(probe, images, images.clone(), {"conv1", "conv3", "conv5"})) {
    EXPECT_EQ(d.relative_l2.abs().max().item<double>(), 0.0) << d.layer;
    EXPECT_NEAR(d.cosine.min().item<double>(), 1.0, 1e-12) << d.layer;
  }
  const auto moved = LayerDivergences(probe, images, (images + 0.05).clamp(0, 1), {"conv1"});
  EXPECT_GT(moved[0].relative_l2.min().item<double>(), 0.0);
  const at::Tensor labels = at::zeros({2}, at::kLong);
  AttackOptions bad;
  bad.epsilon = 0;
  EXPECT_THROW(AdversarialAttack(probe).Run(images, labels, bad), UsageError);
  AttackOptions target;
  target.target = 12;  // the model has 12 classes
  EXPECT_THROW(AdversarialAttack(probe).Run(images, labels, target), UsageError);
  auto no_classes = test::LoadFixtureModel("planted.pt", 96);  // its output is a feature map
  Probe planted(no_classes);
  EXPECT_THROW(AdversarialAttack(planted).Run(images, labels, AttackOptions{}), UsageError);
}

// The divergences against eager PyTorch with forward hooks (tests/fixtures/make_fixtures.py,
// write_divergence_reference) on the same weights, preprocessing and perturbation: convolutions, a
// residual block's output, depthwise blocks and the logits.
TEST(AdversarialTest, LayerDivergencesEqualEagerPyTorch) {
  for (const std::string arch : {"alexnet", "resnet18", "mobilenet_v2"}) {
    auto model = test::LoadFixtureModel(arch + "_script.pt", 64);
    Probe probe(model);
    const test::Reference reference = test::LoadReference(test::Fixture(arch + "_divergence_ref.pt"));
    std::vector<std::string> layers;
    for (const auto& [key, value] : reference) {
      if (key.rfind("rel:", 0) == 0) layers.push_back(key.substr(4));
    }
    ASSERT_GE(layers.size(), 3u) << arch;
    const auto divergences = LayerDivergences(probe, reference.at("clean").toTensor(), reference.at("adversarial").toTensor(), layers);
    for (size_t l = 0; l < layers.size(); ++l) {
      const at::Tensor relative = reference.at("rel:" + layers[l]).toTensor(), cosine = reference.at("cos:" + layers[l]).toTensor();
      EXPECT_GT(relative.min().item<double>(), 1e-3) << arch << " " << layers[l];  // the perturbation moved it
      EXPECT_LT((divergences[l].relative_l2 - relative).abs().max().item<double>(), 1e-4 * relative.max().item<double>())
          << arch << " " << layers[l] << ": " << divergences[l].relative_l2 << " vs " << relative;
      EXPECT_LT((divergences[l].cosine - cosine).abs().max().item<double>(), 1e-5) << arch << " " << layers[l];
    }
  }
}

}  // namespace
}  // namespace cnnviz
