// DeconvNet: projections worked out by hand for every rule, streaming top-k against brute force,
// receptive-field crops, and bad datasets.
#include "cnnviz/methods/deconvnet.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

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
  options.layers = {"classifier"};
  try {
    DeconvNet(probe).Scan(*source, options, nullptr);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no spatial extent"), std::string::npos) << e.what();
  }
  options.layers = {"conv5"};
  options.units = {128};
  EXPECT_THROW(DeconvNet(probe).Scan(*source, options, nullptr), UsageError);
}

TEST(DeconvNetTest, StrongestUnitsOfOneImage) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  auto source = OpenImageDataset(test::Fixture("concepts"));
  const auto units = DeconvNet(probe).StrongestUnits(source->Load(0), "conv5", 4);
  ASSERT_EQ(units.size(), 4u);
  for (size_t i = 1; i < units.size(); ++i) EXPECT_GE(units[i - 1].top[0].activation, units[i].top[0].activation);
}

}  // namespace
}  // namespace cnnviz
