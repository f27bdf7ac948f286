// Receptive fields: known values from the literature, and exactness against gradient support.
#include "test_util.h"

namespace cnnviz {
namespace {

// Bounding box [y0, x0, y1, x1) of the non-zero entries of a [1,C,H,W] gradient.
std::vector<int64_t> SupportBox(const at::Tensor& grad) {
  const at::Tensor mask = grad.abs().sum(at::IntArrayRef{0, 1}) > 0;
  const at::Tensor rows = mask.any(1).nonzero().flatten();
  const at::Tensor cols = mask.any(0).nonzero().flatten();
  if (rows.numel() == 0) return {};
  return {rows.min().item<int64_t>(), cols.min().item<int64_t>(), rows.max().item<int64_t>() + 1,
          cols.max().item<int64_t>() + 1};
}

std::vector<int64_t> ClippedBox(const ReceptiveField& field, int64_t i, int64_t j, int64_t height, int64_t width) {
  int64_t box[4];
  field.Box(i, j, box);
  return {std::max<int64_t>(box[0], 0), std::max<int64_t>(box[1], 0), std::min(box[2], height),
          std::min(box[3], width)};
}

// Input gradient of the most active channel at position (i, j) of `layer` (an inactive unit would have
// no gradient at all behind its ReLU).
at::Tensor UnitGradient(const Probe& probe, const std::string& layer, int64_t i, int64_t j, int64_t size) {
  at::Tensor input = at::rand({1, 3, size, size}).requires_grad_(true);
  ViewSpec spec{{layer}, false};
  const at::Tensor out = probe.Run(spec, input).taps[0];
  const int64_t channel = out.index({0, at::indexing::Slice(), i, j}).argmax().item<int64_t>();
  out.index({0, channel, i, j}).backward();
  return input.grad();
}

TEST(ReceptiveFieldTest, MatchesGradientSupportExactlyOnAPositiveNetwork) {
  constexpr int64_t kSize = 48;
  Probe probe(test::LoadFixtureModel("rf_net.pt", kSize));
  for (const std::string layer : {"conv1", "pool1", "conv2", "pool2", "conv3"}) {
    const LayerInfo& info = probe.Find(layer);
    ASSERT_FALSE(info.receptive_field.global) << layer;
    const int64_t rows = info.shape[2], cols = info.shape[3];
    // A unit whose field lies inside the image: the gradient support is exactly the field.
    const int64_t i = rows / 2, j = cols / 2;
    const auto box = ClippedBox(info.receptive_field, i, j, kSize, kSize);
    EXPECT_EQ(SupportBox(UnitGradient(probe, layer, i, j, kSize)), box) << layer;
    // Border units: padding (and dilation's holes) may leave part of the clipped field unused, but
    // nothing outside it is ever touched.
    for (auto [bi, bj] : std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {rows - 1, cols - 1}}) {
      const auto support = SupportBox(UnitGradient(probe, layer, bi, bj, kSize));
      const auto border_box = ClippedBox(info.receptive_field, bi, bj, kSize, kSize);
      ASSERT_EQ(support.size(), 4u);
      EXPECT_TRUE(support[0] >= border_box[0] && support[1] >= border_box[1] && support[2] <= border_box[2] &&
                  support[3] <= border_box[3])
          << layer << " unit " << bi << "," << bj;
    }
  }
  EXPECT_TRUE(probe.Find("head").receptive_field.global);
}

TEST(ReceptiveFieldTest, ContainsAllGradientOfResNetUnits) {
  constexpr int64_t kSize = 64;
  Probe probe(test::LoadFixtureModel("resnet18_script.pt", kSize));
  for (const std::string layer : {"layer1", "layer2.0.conv1", "layer3"}) {
    const LayerInfo& info = probe.Find(layer);
    const int64_t i = info.shape[2] / 2, j = info.shape[3] / 2;
    const auto support = SupportBox(UnitGradient(probe, layer, i, j, kSize));
    const auto box = ClippedBox(info.receptive_field, i, j, kSize, kSize);
    ASSERT_EQ(support.size(), 4u) << layer;
    EXPECT_GE(support[0], box[0]) << layer;
    EXPECT_GE(support[1], box[1]) << layer;
    EXPECT_LE(support[2], box[2]) << layer;
    EXPECT_LE(support[3], box[3]) << layer;
  }
}

TEST(ReceptiveFieldTest, KnownValuesOfAlexNetAndResNet18) {
  // Araujo et al., Distill 2019: AlexNet conv5 163 px, pool5 195 px; ResNet-18 layer3 211, layer4 435.
  Probe alexnet(test::LoadFixtureModel("alexnet_trace.pt", 64));
  EXPECT_EQ(alexnet.Find("features.10").receptive_field.size[0], 163);
  EXPECT_EQ(alexnet.Find("features.10").receptive_field.stride[0], 16);
  EXPECT_EQ(alexnet.Find("features.12").receptive_field.size[1], 195);
  EXPECT_EQ(alexnet.Find("features.12").receptive_field.stride[1], 32);
  Probe resnet(test::LoadFixtureModel("resnet18_script.pt", 64));
  EXPECT_EQ(resnet.Find("layer3").receptive_field.size[0], 211);
  EXPECT_EQ(resnet.Find("layer4").receptive_field.size[0], 435);
  EXPECT_EQ(resnet.Find("layer4").receptive_field.stride[0], 32);
  EXPECT_TRUE(resnet.Find("fc").receptive_field.global);
  // The bundled model: 3x3 convolutions and 2x2 max pools (scripted F.max_pool2d with list arguments).
  for (const std::string model : {"tinycnn_script.pt", "tinycnn_trace.pt"}) {
    Probe tiny(test::LoadFixtureModel(model, 64));
    EXPECT_EQ(tiny.Find("conv3").receptive_field.size[0], 18) << model;
    EXPECT_EQ(tiny.Find("conv5").receptive_field.size[1], 46) << model;
    EXPECT_EQ(tiny.Find("conv5").receptive_field.stride[0], 8) << model;
  }
}

// DenseNet's appended lists, ShuffleNet's channel shuffle and ConvNeXt's LayerNorm2d are walked (known
// fields); after nearest upsampling, which the walk does not model, fields are measured, and say so.
// Scripted (the dense layers' forwards are overloads) and traced alike.
TEST(ReceptiveFieldTest, WalksListsShufflesAndPerPositionNormsAndMeasuresTheRest) {
  constexpr int64_t kSize = 24;
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"stem", 3}, {"dense1", 5}, {"dense2", 7}, {"shuffle", 7}, {"norm", 7}, {"mix", 9}, {"pool", 9}, {"head", 11}};
  for (const char* file : {"walk_net_script.pt", "walk_net_trace.pt"}) {
    Probe probe(test::LoadFixtureModel(file, kSize));
    for (const auto& [layer, size] : expected) {
      const LayerInfo& info = probe.Find(layer);
      const ReceptiveField& field = info.receptive_field;
      ASSERT_FALSE(field.global) << file << " " << layer;
      EXPECT_EQ(field.size[0], size) << file << " " << layer;
      EXPECT_EQ(field.size[1], size) << file << " " << layer;
      EXPECT_EQ(field.stride[0], 1) << file << " " << layer;
      EXPECT_DOUBLE_EQ(field.offset[0], 0.0) << file << " " << layer;
      const bool after_upsampling = layer == "pool" || layer == "head";
      EXPECT_EQ(field.measured, after_upsampling) << file << " " << layer;
      EXPECT_EQ(field.unmodelled_op, after_upsampling ? "aten::upsample_nearest2d" : "") << file << " " << layer;
      // The centre unit's gradient never leaves the field.
      const int64_t i = info.shape[2] / 2, j = info.shape[3] / 2;
      const auto support = SupportBox(UnitGradient(probe, layer, i, j, kSize));
      const auto box = ClippedBox(field, i, j, kSize, kSize);
      ASSERT_EQ(support.size(), 4u) << file << " " << layer;
      EXPECT_TRUE(support[0] >= box[0] && support[1] >= box[1] && support[2] <= box[2] && support[3] <= box[3])
          << file << " " << layer;
    }
  }
}

// ConvNeXt-style blocks: the permute to channels-last and back, layer_norm and linear over channels keep
// positions; the field grows only at the depthwise convolution.
TEST(ReceptiveFieldTest, ChannelsLastBlocksKeepPositions) {
  for (const char* file : {"channels_last_script.pt", "channels_last_trace.pt"}) {
    Probe probe(test::LoadFixtureModel(file, 16));
    EXPECT_EQ(probe.Find("stem").receptive_field.size[0], 3) << file;
    for (const char* layer : {"block.0", "block.2", "block.3", "block.6", "block"}) {
      EXPECT_FALSE(probe.Find(layer).receptive_field.global) << file << " " << layer;
      EXPECT_EQ(probe.Find(layer).receptive_field.size[0], 5) << file << " " << layer;
      EXPECT_FALSE(probe.Find(layer).receptive_field.measured) << file << " " << layer;
    }
    EXPECT_EQ(probe.Find("head").receptive_field.size[1], 5) << file;
  }
}

}  // namespace
}  // namespace cnnviz
