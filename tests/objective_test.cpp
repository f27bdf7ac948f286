// Objective expressions: parsing, round trips, errors; the diversity penalty. Rotation's gradient.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <map>

#include "cnnviz/core/error.h"
#include "cnnviz/optvis/objective.h"
#include "cnnviz/optvis/transform.h"

namespace cnnviz {
namespace {

TEST(ObjectiveTest, ParsesLucidStyleSums) {
  const Objective objective = ParseObjective("conv5:42 + 0.5*conv4:7 - tv");
  ASSERT_EQ(objective.terms.size(), 3u);
  EXPECT_EQ(objective.terms[0].layer, "conv5");
  EXPECT_EQ(objective.terms[0].unit, 42);
  EXPECT_DOUBLE_EQ(objective.terms[1].weight, 0.5);
  EXPECT_EQ(objective.terms[1].layer, "conv4");
  EXPECT_EQ(objective.terms[2].kind, "tv");
  EXPECT_DOUBLE_EQ(objective.terms[2].weight, -1.0);
  EXPECT_EQ(objective.ToString(), "conv5:42 + 0.5*conv4:7 - tv");
}

TEST(ObjectiveTest, NeuronsClassesAndModulePaths) {
  const Objective objective = ParseObjective("-2*layer4.1.conv2:3@1,2 + class:7 + relu#1:0");
  EXPECT_EQ(objective.terms[0].kind, "neuron");
  EXPECT_EQ(objective.terms[0].layer, "layer4.1.conv2");
  EXPECT_EQ(objective.terms[0].y, 1);
  EXPECT_EQ(objective.terms[0].x, 2);
  EXPECT_DOUBLE_EQ(objective.terms[0].weight, -2.0);
  EXPECT_EQ(objective.terms[1].kind, "class");
  EXPECT_EQ(objective.terms[1].unit, 7);
  EXPECT_EQ(objective.terms[2].layer, "relu#1");
  EXPECT_EQ(ParseObjective(objective.ToString()).ToString(), objective.ToString());
  // A Sequential's child "0" parses only behind a weight, which the canonical text keeps (fuzzing found
  // "1*2:3" written back as "2:3").
  const Objective numeric = ParseObjective("1*2:3 - 1*0:1@0,0");
  EXPECT_EQ(numeric.terms[0].layer, "2");
  EXPECT_EQ(numeric.ToString(), "1*2:3 - 1*0:1@0,0");
  EXPECT_EQ(ParseObjective(numeric.ToString()).ToString(), numeric.ToString());
}

// Every term kind comes from the registry: its text parses to it and prints back, and --help lists it.
TEST(ObjectiveTest, RegistryDrivesParsingPrintingAndHelp) {
  const std::map<std::string, std::string> samples = {{"channel", "conv5:3"}, {"neuron", "conv5:3@1,2"},
                                                      {"class", "class:7"}, {"tv", "tv"}, {"l2", "l2"},
                                                      {"alpha", "alpha"}};
  const std::string help = ObjectiveHelp();
  for (const ObjectiveKind& kind : ObjectiveKinds()) {
    EXPECT_NE(help.find(kind.syntax), std::string::npos) << kind.name;
    EXPECT_TRUE(kind.format != nullptr) << kind.name;
    EXPECT_TRUE(kind.gathered_channel_mean || kind.evaluate != nullptr) << kind.name;
    const auto sample = samples.find(kind.name);
    if (sample == samples.end()) continue;  // direction reads a file: ParsesDirectionFiles
    const Objective parsed = ParseObjective(sample->second);
    ASSERT_EQ(parsed.terms.size(), 1u);
    EXPECT_EQ(parsed.terms[0].kind, kind.name);
    EXPECT_EQ(parsed.ToString(), sample->second);
  }
  EXPECT_EQ(samples.size() + 1, ObjectiveKinds().size());
  // A keyword with an opener is a keyword only with it: "dir:3" is unit 3 of a layer named dir.
  EXPECT_EQ(ParseObjective("dir:3").terms[0].kind, "channel");
  EXPECT_EQ(ParseObjective("dir:3").terms[0].layer, "dir");
  EXPECT_THROW(FindObjectiveKind("nope"), UsageError);
}

TEST(ObjectiveTest, SyntaxErrorsNameThePosition) {
  for (const std::string bad : {"", "conv5", "conv5:", "conv5:x", "conv5:1 +", "0.5 conv5:1", "conv5:1 * 2",
                                "dir(conv5, )", "conv5:1@3"}) {
    try {
      ParseObjective(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  }
  try {
    ParseObjective("conv5:1 ? conv4:2");
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("position 9"), std::string::npos) << e.what();
  }
}

TEST(ObjectiveTest, ChannelNeuronAndRegularizerValues) {
  // Two elements, one 2-channel 3x3 tap.
  const at::Tensor tap = at::arange(36, at::kFloat).view({2, 2, 3, 3});
  const at::Tensor image = at::full({2, 3, 4, 4}, 0.5);
  std::vector<Objective> objectives = {ParseObjective("a:1 - l2"), ParseObjective("2*a:0@0,2")};
  const at::Tensor values = EvaluateObjectives(objectives, image, {"a"}, {tap}, at::Tensor());
  EXPECT_FLOAT_EQ(values[0].item<float>(), 13.0f);      // mean of 9..17
  EXPECT_FLOAT_EQ(values[1].item<float>(), 2 * 20.0f);  // element 1, channel 0, (0, 2)
}

TEST(ObjectiveTest, DiversityIsLowForDifferentAndHighForEqualImages) {
  const at::Tensor a = at::rand({1, 4, 5, 5});
  const at::Tensor same = DiversityPenalty(at::cat({a, a}), 2);
  EXPECT_NEAR(same[0].item<float>(), 1.0f, 1e-5);
  at::Tensor b = at::zeros({1, 4, 5, 5});
  b[0][0] = 1.0;
  at::Tensor c = at::zeros({1, 4, 5, 5});
  c[0][1] = 1.0;
  EXPECT_NEAR(DiversityPenalty(at::cat({b, c}), 2)[0].item<float>(), 0.0f, 1e-6);
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

// Rotation on a CPU runs ATen's forward with a backward of its own (the images' gradient only): the same
// values, and the same gradient as ATen's backward to float rounding, with pixels falling outside.
TEST(TransformTest, RotationGradientEqualsAtensOwn) {
  at::manual_seed(9);
  const at::Tensor base = at::rand({2, 3, 37, 45});
  const at::Tensor upstream = at::randn({2, 3, 37, 45});
  for (const double degrees : {7.0, -10.0, 90.0}) {
    Rng rng(1);
    const at::Tensor x = base.clone().requires_grad_(true);
    const at::Tensor y = RandomRotate({degrees})(x, rng);
    ASSERT_NE(y.grad_fn()->name().find("SampleImages"), std::string::npos) << y.grad_fn()->name();
    y.backward(upstream);

    const double radians = degrees * M_PI / 180.0, c = std::cos(radians), s = std::sin(radians);
    const at::Tensor theta = at::tensor({c, -s, 0.0, s, c, 0.0}, base.options()).view({1, 2, 3}).expand({2, 2, 3});
    const at::Tensor grid = at::affine_grid_generator(theta, base.sizes(), false);
    const at::Tensor reference = base.clone().requires_grad_(true);
    const at::Tensor expected = at::grid_sampler(reference, grid, 0, 0, false);
    expected.backward(upstream);

    EXPECT_TRUE(at::equal(y.detach(), expected.detach())) << degrees;
    EXPECT_LT((x.grad() - reference.grad()).abs().max().item<double>(), 1e-5) << degrees;
    EXPECT_GT(reference.grad().abs().sum().item<double>(), 1.0) << degrees;
  }
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

// The transform registry: presets and kinds by name, composed in order; bad text is refused naming the
// piece and listing what is registered.
TEST(TransformTest, RegistryParsesPresetsAndPipelines) {
  const at::Tensor images = at::rand({2, 3, 20, 20});
  auto run = [&](const Transform& transform, uint64_t seed) {
    Rng rng(seed);
    return transform(images, rng);
  };
  EXPECT_TRUE(run(ParseTransforms("standard"), 3).equal(run(StandardTransforms(), 3)));
  EXPECT_TRUE(run(ParseTransforms("none"), 3).equal(images));
  EXPECT_EQ(run(ParseTransforms("pad:3"), 1).sizes(), (std::vector<int64_t>{2, 3, 26, 26}));
  // pad then jitter: 20 + 2*4 = 28 rows, minus a random crop of up to 2.
  const at::Tensor piped = run(ParseTransforms("pad:4,jitter:2"), 5);
  EXPECT_GE(piped.size(2), 26);
  EXPECT_LE(piped.size(2), 28);
  EXPECT_TRUE(run(ParseTransforms("scale:1-1"), 2).equal(run(RandomScale({1.0}), 2)));
  EXPECT_TRUE(run(ParseTransforms("rotate:0"), 2).allclose(run(RandomRotate({0.0}), 2)));
  for (const char* bad : {"bogus", "pad", "pad:-1", "jitter:x", "scale:1.1-0.9", "none:3", "standard,"}) {
    try {
      ParseTransforms(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--transforms"), std::string::npos) << e.what();
    }
  }
  for (const auto& kind : TransformRegistry()) {
    EXPECT_NE(TransformsHelp().find(kind.usage), std::string::npos) << kind.name;
  }
}

}  // namespace
}  // namespace cnnviz
