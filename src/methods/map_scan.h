// The hot loops of the dataset scans, on plain float arrays (private header; no LibTorch here, so they
// compile fast and the compiler sees every loop whole).
//
// Maps stored positions-major, [B, P, K] (NHWC: the K channels of a position side by side), are what a
// CPU inference view in channels-last layouts returns (see ViewSpec::channels_last). On x86-64 with GCC
// every loop is also compiled for AVX2 and the better one is picked when the program loads
// (target_clones), so a portable build still runs 8 floats per instruction where the CPU has it.
#pragma once

#include <cstdint>
#include <vector>

namespace cnnviz::detail {

// Per image and channel, the maximum over positions and the first position holding it (NaNs are passed
// over): maps [batch, positions, channels] -> maxima and argmax [batch, channels].
void ChannelMaxima(const float* maps, int64_t batch, int64_t positions, int64_t channels, float* maxima,
                   int64_t* argmax);

// Copies the channels `units` of one image's positions-major maps [positions, channels] into planes:
// out [units.size(), positions].
void GatherPlanes(const float* maps, int64_t positions, int64_t channels, const std::vector<int64_t>& units,
                  float* out);

// Appends to pending[k] every value of channel k, for k in [begin, end), that is above floor[k]. An image
// none of whose peaks (peaks [batch, channels], its maps' maxima) passes is not read.
void CollectAbove(const float* maps, int64_t batch, int64_t positions, int64_t channels, const float* peaks,
                  const float* floor, int64_t begin, int64_t end, std::vector<float>* pending);

// Rows [rows, size] against a threshold per row: counts[r] = how many values of row r are above it, and
// the (row, position) pairs where they are, in row-major order (the order at::nonzero lists them in).
void MaskHits(const float* values, int64_t rows, int64_t size, const float* thresholds, int64_t* counts,
              std::vector<int64_t>* hit_rows, std::vector<int64_t>* hit_positions);

}  // namespace cnnviz::detail
