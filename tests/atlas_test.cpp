// The atlas's building blocks: t-SNE layouts and grid cells, and the shared dataset pass (consumers fed by
// dissection's first pass or by ScanImages see the same batches; samples do not depend on batching).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

#include "cnnviz/core/error.h"
#include "cnnviz/io/broden.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/methods/dataset_scan.h"
#include "cnnviz/methods/deconvnet.h"
#include "cnnviz/methods/embedding.h"
#include "cnnviz/methods/network_dissection.h"
#include "cnnviz/model/probe.h"
#include "test_util.h"

namespace cnnviz {
namespace {

// Three well-separated Gaussian clusters in 20-D: t-SNE keeps every point nearest its own cluster.
at::Tensor Clusters(int64_t per_cluster, at::Tensor* labels) {
  at::manual_seed(3);
  std::vector<at::Tensor> parts, tags;
  for (int64_t c = 0; c < 3; ++c) {
    at::Tensor centre = at::zeros({20});
    centre[c * 5] = 10;
    parts.push_back(centre + at::randn({per_cluster, 20}));
    tags.push_back(at::full({per_cluster}, c, at::kLong));
  }
  *labels = at::cat(tags);
  return at::cat(parts);
}

TEST(TsneTest, KeepsClustersApartAndIsDeterministic) {
  at::Tensor labels;
  const at::Tensor points = Clusters(40, &labels);
  TsneOptions options;
  options.iterations = 400;
  options.perplexity = 10;
  const at::Tensor layout = Tsne(points, options);
  ASSERT_EQ(layout.sizes(), (std::vector<int64_t>{120, 2}));
  ASSERT_TRUE(at::isfinite(layout).all().item<bool>());
  // Every point's nearest neighbour in the layout is in its own cluster.
  at::Tensor distances = at::cdist(layout, layout);
  distances.fill_diagonal_(INFINITY);
  const at::Tensor nearest = distances.argmin(1);
  EXPECT_TRUE(labels.index_select(0, nearest).equal(labels));
  // Clusters are far apart relative to their size: centroid gaps > 3x the largest within-cluster spread.
  std::vector<at::Tensor> centroids;
  double spread = 0;
  for (int64_t c = 0; c < 3; ++c) {
    const at::Tensor members = layout.index_select(0, (labels == c).nonzero().flatten());
    centroids.push_back(members.mean(0));
    spread = std::max(spread, (members - centroids.back()).norm(2, 1).mean().item<double>());
  }
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) EXPECT_GT((centroids[a] - centroids[b]).norm().item<double>(), 3 * spread);
  }
  EXPECT_TRUE(Tsne(points, options).equal(layout));  // same seed, same layout
  options.seed = 1;
  EXPECT_FALSE(Tsne(points, options).equal(layout));
}

TEST(TsneTest, PerplexityIsLoweredForSmallSetsAndBadInputRefused) {
  const at::Tensor points = at::randn({9, 4});
  const at::Tensor layout = Tsne(points, TsneOptions{});  // perplexity 30 > (9 - 1) / 3
  EXPECT_TRUE(at::isfinite(layout).all().item<bool>());
  EXPECT_THROW(Tsne(at::randn({3, 4}), TsneOptions{}), UsageError);
  // Many identical vectors (a ReLU layer's zeros, a constant unit): still a finite layout.
  const at::Tensor repeated = at::cat({at::zeros({40, 3}), at::ones({30, 3}), at::randn({10, 3})});
  EXPECT_TRUE(at::isfinite(Tsne(repeated, TsneOptions{})).all().item<bool>());
  TsneOptions bad;
  bad.perplexity = 0;
  EXPECT_THROW(Tsne(points, bad), UsageError);
}

TEST(TsneTest, LayoutNormalizationAndGridCells) {
  // Points on a line plus one far outlier: percentile clipping keeps the line spread over [0, 1].
  std::vector<float> values;
  for (int i = 0; i < 200; ++i) {
    values.push_back(static_cast<float>(i));
    values.push_back(static_cast<float>(i % 10));
  }
  values.push_back(1e6f);
  values.push_back(1e6f);
  const at::Tensor layout = NormalizeLayout(at::tensor(values).view({-1, 2}));
  EXPECT_GE(layout.min().item<float>(), 0.0f);
  EXPECT_LE(layout.max().item<float>(), 1.0f);
  EXPECT_NEAR(layout[100][0].item<float>(), 0.5f, 0.02f);
  EXPECT_EQ(layout[200][0].item<float>(), 1.0f);  // the outlier is clipped to the edge
  // Cells: (x, y) = (min(floor(v * G), G - 1), ...); cells under min_count are left out.
  const at::Tensor points = at::tensor({0.0f, 0.0f, 0.1f, 0.2f, 0.99f, 0.5f, 1.0f, 0.5f, 0.6f, 0.6f}).view({-1, 2});
  const std::vector<GridCell> cells = GridCells(points, 2, 1);
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_EQ(cells[0].x, 0);
  EXPECT_EQ(cells[0].y, 0);
  EXPECT_EQ(cells[0].members, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(cells[1].x, 1);  // (0.99, 0.5), (1.0, 0.5) and (0.6, 0.6): row 1, column 1
  EXPECT_EQ(cells[1].y, 1);
  EXPECT_EQ(cells[1].members, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(GridCells(points, 2, 3).size(), 1u);
}

struct Consumers {
  TopActivations top{5};
  PeakActivations peaks;
  ActivationSamples samples{150, 3, 7};
  std::vector<ScanConsumer*> all() { return {&top, &peaks, &samples}; }
};

// The consumers see the same maps whichever pass feeds them and however the dataset is batched; their
// top lists equal DeconvNet::Scan's, their peaks each image's maximum, and feeding them leaves
// dissection's own result unchanged.
TEST(DatasetScanTest, ConsumersAgreeAcrossPassesAndBatches) {
  auto model = test::LoadFixtureModel("tinycnn_script.pt", 96);
  Probe probe(model);
  auto broden = OpenBroden(test::Fixture("concepts"));
  const std::vector<std::string> layers = {"conv2", "conv4"};

  Consumers scanned;
  ScanOptions scan;
  scan.layers = layers;
  scan.batch = 7;
  const ScanSummary summary = ScanImages(probe, *broden, scan, scanned.all());
  EXPECT_EQ(summary.images, broden->size());

  Consumers rebatched;
  scan.batch = 16;
  ScanImages(probe, *broden, scan, rebatched.all());

  Consumers dissected;
  DissectionOptions options;
  options.layers = layers;
  options.batch = 11;
  options.top_images = 5;
  const DissectionResult with = NetworkDissection(probe).Run(*broden, options, nullptr, dissected.all());
  const DissectionResult without = NetworkDissection(probe).Run(*broden, options);

  DeconvOptions deconv;
  deconv.layers = layers;
  deconv.top = 5;
  const std::vector<UnitTop> reference = DeconvNet(probe).Scan(*broden, deconv, nullptr);
  size_t r = 0;
  for (size_t l = 0; l < layers.size(); ++l) {
    for (Consumers* c : {&scanned, &rebatched, &dissected}) {
      EXPECT_TRUE(at::allclose(c->peaks.Peaks(l), scanned.peaks.Peaks(l))) << l;
      EXPECT_TRUE(at::allclose(c->samples.Vectors(l), scanned.samples.Vectors(l))) << l;
      EXPECT_EQ(c->samples.SampleImages(), scanned.samples.SampleImages());
    }
    EXPECT_EQ(scanned.samples.Vectors(l).size(0), 150);
    const std::vector<UnitTop> units = dissected.top.Units(l);
    for (const UnitTop& unit : units) {
      const UnitTop& expected = reference[r++];
      ASSERT_EQ(unit.unit, expected.unit);
      ASSERT_EQ(unit.top.size(), expected.top.size());
      for (size_t j = 0; j < unit.top.size(); ++j) {
        EXPECT_EQ(unit.top[j].image, expected.top[j].image) << layers[l] << ":" << unit.unit;
        EXPECT_EQ(unit.top[j].y, expected.top[j].y);
        EXPECT_EQ(unit.top[j].x, expected.top[j].x);
        EXPECT_NEAR(unit.top[j].activation, expected.top[j].activation, 1e-4);
      }
      // Dissection keeps the same top images in the same order.
      const auto& own = with.layers[l].units[static_cast<size_t>(unit.unit)].top_images;
      for (size_t j = 0; j < own.size(); ++j) EXPECT_EQ(static_cast<size_t>(own[j].first), unit.top[j].image);
    }
    // The peaks are each image's maximum over positions.
    at::NoGradGuard no_grad;
    const at::Tensor image = broden->Load(3).unsqueeze(0);
    const at::Tensor tap = probe.Run(ViewSpec{{layers[l]}, false}, model->Preprocess(image)).taps[0][0];
    EXPECT_TRUE(at::allclose(scanned.peaks.Peaks(l)[3], tap.flatten(1).amax(1), 1e-4, 1e-5));
    // Feeding consumers changes nothing in dissection.
    EXPECT_TRUE(with.layers[l].iou.equal(without.layers[l].iou));
    EXPECT_TRUE(with.layers[l].thresholds.equal(without.layers[l].thresholds));
  }
  // Samples sit at fractions of the map, the same for every layer: 3 per image while they last.
  const at::Tensor places = scanned.samples.Places();
  EXPECT_EQ(places.size(0), 150);
  EXPECT_GE(places.min().item<float>(), 0.0f);
  EXPECT_LT(places.max().item<float>(), 1.0f);
  EXPECT_EQ(scanned.samples.SampleImages()[149], 49);
}

// The shared pass in bf16: consumers get float32 maps close to fp32's (per-image peaks within 3% of a
// unit's largest) and the same sampled positions with close vectors.
TEST(DatasetScanTest, Bf16PassFeedsTheConsumersAsFp32) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  auto broden = OpenBroden(test::Fixture("concepts"));
  ScanOptions scan;
  scan.layers = {"conv2", "conv5"};
  scan.precision = Precision::kFp16;
  Consumers refused;
  EXPECT_THROW(ScanImages(probe, *broden, scan, refused.all()), UsageError);
  if (CpuBf16Flag().empty()) GTEST_SKIP() << "this CPU has no native bfloat16";
  Consumers exact, reduced;
  scan.precision = Precision::kFp32;
  ScanImages(probe, *broden, scan, exact.all());
  scan.precision = Precision::kBf16;
  ScanImages(probe, *broden, scan, reduced.all());
  EXPECT_EQ(reduced.samples.SampleImages(), exact.samples.SampleImages());
  for (size_t l = 0; l < scan.layers.size(); ++l) {
    const at::Tensor a = exact.peaks.Peaks(l), b = reduced.peaks.Peaks(l);
    ASSERT_EQ(b.scalar_type(), at::kFloat);
    const at::Tensor scale = std::get<0>(a.max(0, true)).clamp_min(1e-6);
    EXPECT_LT(((a - b).abs() / scale).max().item<double>(), 0.03) << scan.layers[l];
    EXPECT_FALSE(a.equal(b)) << "bf16 changed nothing: did it run?";
    EXPECT_TRUE(at::allclose(reduced.samples.Vectors(l), exact.samples.Vectors(l), 0.05, 0.05)) << scan.layers[l];
  }
}

}  // namespace
}  // namespace cnnviz
