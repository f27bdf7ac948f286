// The dataset scans' loops over positions-major maps (src/methods/map_scan.h) against the tensor ops
// they replace, on sizes that are not multiples of their blocks, with ties and values on the thresholds.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "src/methods/map_scan.h"
#include "src/methods/top_k.h"

namespace cnnviz {
namespace {

// [B, P, K] values rounded to a coarse grid, so that maxima tie and thresholds are hit exactly.
at::Tensor CoarseMaps(int64_t batch, int64_t positions, int64_t channels, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({batch, positions, channels}).mul(4).round().div(4).contiguous();
}

TEST(MapScanTest, ChannelMaximaAreTheMaximaAndFirstPositionsOfEachMap) {
  for (const int64_t channels : {1, 3, 16, 37}) {
    const at::Tensor maps = CoarseMaps(5, 53, channels, 1 + channels);
    const auto [maxima, argmax] = detail::ChannelMaxima(maps);
    const at::Tensor expected = std::get<0>(maps.max(1));  // [B, K]
    EXPECT_TRUE(at::equal(maxima, expected)) << channels;
    // The first position holding the maximum.
    const at::Tensor is_max = (maps == expected.unsqueeze(1)).to(at::kLong);
    const at::Tensor earliness = at::arange(53, 0, -1, at::kLong).view({1, -1, 1});  // larger for earlier positions
    const at::Tensor first = (is_max * earliness).argmax(1);
    EXPECT_TRUE(at::equal(argmax, first)) << channels;
  }
}

TEST(MapScanTest, GatherPlanesCopiesTheChosenChannelsAsPlanes) {
  const at::Tensor maps = CoarseMaps(1, 37, 21, 7)[0];  // [P, K]
  const std::vector<int64_t> units = {20, 0, 5, 5, 13};
  at::Tensor planes = at::empty({static_cast<int64_t>(units.size()), 37}, at::kFloat);
  detail::GatherPlanes(maps.data_ptr<float>(), 37, 21, units, planes.data_ptr<float>());
  EXPECT_TRUE(at::equal(planes, maps.index_select(1, at::tensor(units, at::kLong)).t()));
}

TEST(MapScanTest, CollectAboveKeepsExactlyTheValuesAboveEachFloor) {
  const int64_t batch = 4, positions = 45, channels = 19;
  const at::Tensor maps = CoarseMaps(batch, positions, channels, 3);
  const at::Tensor peaks = std::get<0>(maps.max(1));
  std::vector<float> floor(channels);
  for (int64_t k = 0; k < channels; ++k) floor[k] = k % 4 == 0 ? 100.0f : 0.25f * static_cast<float>(k % 5);
  std::vector<std::vector<float>> pending(channels);
  // Two blocks, as the parallel caller splits units.
  detail::CollectAbove(maps.data_ptr<float>(), batch, positions, channels, peaks.data_ptr<float>(), floor.data(), 0, 7,
                       pending.data());
  detail::CollectAbove(maps.data_ptr<float>(), batch, positions, channels, peaks.data_ptr<float>(), floor.data(), 7,
                       channels, pending.data());
  for (int64_t k = 0; k < channels; ++k) {
    const at::Tensor column = maps.select(2, k).flatten();
    const at::Tensor above = column.masked_select(column > floor[k]);
    std::vector<float> expected(above.data_ptr<float>(), above.data_ptr<float>() + above.numel());
    std::vector<float> got = pending[k];
    std::sort(expected.begin(), expected.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, expected) << "unit " << k;
  }
}

TEST(MapScanTest, MaskHitsEqualComparisonCountsAndNonzero) {
  const int64_t rows = 6, size = 83;
  const at::Tensor values = CoarseMaps(1, rows, size, 11)[0].contiguous();
  const at::Tensor thresholds = at::tensor({0.0f, 0.25f, -0.5f, 100.0f, 1.0f, -100.0f});
  at::Tensor counts = at::empty({rows}, at::kLong);
  std::vector<int64_t> hit_rows, hit_positions;
  detail::MaskHits(values.data_ptr<float>(), rows, size, thresholds.data_ptr<float>(), counts.data_ptr<int64_t>(),
                   &hit_rows, &hit_positions);
  const at::Tensor on = values > thresholds.unsqueeze(1);
  EXPECT_TRUE(at::equal(counts, on.sum(1)));
  const at::Tensor hits = on.nonzero();
  EXPECT_TRUE(at::equal(at::tensor(hit_rows, at::kLong), hits.select(1, 0).contiguous()));
  EXPECT_TRUE(at::equal(at::tensor(hit_positions, at::kLong), hits.select(1, 1).contiguous()));
}

// The top-k maps of strided (positions-major) batches equal those of contiguous planes.
TEST(MapScanTest, TopImageMapsDoNotDependOnTheBatchLayout) {
  detail::LayerTopK planar({0, 1, 2, 3, 4}, 6), strided({0, 1, 2, 3, 4}, 6);
  planar.keep_maps = strided.keep_maps = true;
  for (int64_t step = 0; step < 4; ++step) {
    const at::Tensor maps = CoarseMaps(3, 30, 5, 20 + step);  // [B, P, K]
    const at::Tensor indices = at::arange(3 * step, 3 * step + 3, at::kLong);
    const auto [maxima, argmax] = detail::ChannelMaxima(maps);
    strided.Update(maps.transpose(1, 2), indices, 2, maxima, argmax);
    planar.Update(maps.permute({0, 2, 1}).contiguous().view({3, 5, 5, 6}), indices, 2);
  }
  EXPECT_TRUE(at::equal(strided.values, planar.values));
  EXPECT_TRUE(at::equal(strided.images, planar.images));
  EXPECT_TRUE(at::equal(strided.maps, planar.maps));
}

}  // namespace
}  // namespace cnnviz
