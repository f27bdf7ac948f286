// Seeding: one call makes torch's CPU and CUDA generators deterministic for a run.
#pragma once

#include <cstdint>

namespace cnnviz {

// Seeds torch's global generators (CPU and every CUDA device).
void SeedEverything(uint64_t seed);

}  // namespace cnnviz
