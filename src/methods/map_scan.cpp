#include "src/methods/map_scan.h"

#include <algorithm>
#include <cmath>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CNNVIZ_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CNNVIZ_VECTOR_CLONES
#endif

namespace cnnviz::detail {
namespace {

constexpr int64_t kChunk = 16;  // values tested together before any is looked at one by one

}  // namespace

CNNVIZ_VECTOR_CLONES
void ChannelMaxima(const float* maps, int64_t batch, int64_t positions, int64_t channels, float* maxima,
                   int64_t* argmax) {
  std::vector<float> best(static_cast<size_t>(channels));
  std::vector<int32_t> where(static_cast<size_t>(channels));
  for (int64_t b = 0; b < batch; ++b) {
    std::fill(best.begin(), best.end(), -INFINITY);
    std::fill(where.begin(), where.end(), 0);
    float* __restrict m = best.data();
    int32_t* __restrict w = where.data();
    for (int64_t p = 0; p < positions; ++p) {
      const float* __restrict row = maps + (b * positions + p) * channels;
      const int32_t at = static_cast<int32_t>(p);
      for (int64_t k = 0; k < channels; ++k) {  // branch-free, so that it runs on vectors of channels
        const bool higher = row[k] > m[k];
        m[k] = higher ? row[k] : m[k];
        w[k] = higher ? at : w[k];
      }
    }
    std::copy(best.begin(), best.end(), maxima + b * channels);
    std::copy(where.begin(), where.end(), argmax + b * channels);
  }
}

CNNVIZ_VECTOR_CLONES
void GatherPlanes(const float* maps, int64_t positions, int64_t channels, const std::vector<int64_t>& units,
                  float* out) {
  // A block of positions (all their channels, in cache) at a time; each unit's values of the block go
  // out contiguously.
  const int64_t count = static_cast<int64_t>(units.size());
  int64_t p = 0;
  for (; p + kChunk <= positions; p += kChunk) {
    const float* __restrict block = maps + p * channels;
    for (int64_t a = 0; a < count; ++a) {
      const float* __restrict column = block + units[a];
      float* __restrict target = out + a * positions + p;
      for (int64_t i = 0; i < kChunk; ++i) target[i] = column[i * channels];
    }
  }
  for (; p < positions; ++p) {
    for (int64_t a = 0; a < count; ++a) out[a * positions + p] = maps[p * channels + units[a]];
  }
}

CNNVIZ_VECTOR_CLONES
void CollectAbove(const float* maps, int64_t batch, int64_t positions, int64_t channels, const float* peaks,
                  const float* floor, int64_t begin, int64_t end, std::vector<float>* pending) {
  for (int64_t b = 0; b < batch; ++b) {
    int any = 0;
    for (int64_t k = begin; k < end; ++k) any += peaks[b * channels + k] > floor[k];
    if (any == 0) continue;
    const float* __restrict limit = floor;
    for (int64_t p = 0; p < positions; ++p) {
      const float* __restrict row = maps + (b * positions + p) * channels;
      int hits = 0;  // a count rather than a flag: integer sums vectorize, boolean ors do not
      for (int64_t k = begin; k < end; ++k) hits += row[k] > limit[k];
      if (hits == 0) continue;
      for (int64_t k = begin; k < end; ++k) {
        if (row[k] > floor[k]) pending[k].push_back(row[k]);
      }
    }
  }
}

CNNVIZ_VECTOR_CLONES
void MaskHits(const float* values, int64_t rows, int64_t size, const float* thresholds, int64_t* counts,
              std::vector<int64_t>* hit_rows, std::vector<int64_t>* hit_positions) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict row = values + r * size;
    const float t = thresholds[r];
    int64_t count = 0;
    int64_t p = 0;
    for (; p + kChunk <= size; p += kChunk) {
      int any = 0;
      for (int64_t i = 0; i < kChunk; ++i) any += row[p + i] > t;
      if (any == 0) continue;
      for (int64_t i = p; i < p + kChunk; ++i) {
        if (row[i] > t) {
          hit_rows->push_back(r);
          hit_positions->push_back(i);
          ++count;
        }
      }
    }
    for (; p < size; ++p) {
      if (row[p] > t) {
        hit_rows->push_back(r);
        hit_positions->push_back(p);
        ++count;
      }
    }
    counts[r] = count;
  }
}

}  // namespace cnnviz::detail
