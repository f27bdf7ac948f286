// Device selection: "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace cnnviz {

// Parses a --device value and checks that the device exists. Throws UsageError for a malformed value
// and ModelError when CUDA is asked for but not available.
c10::Device ResolveDevice(const std::string& spec);

// Human-readable name: "cpu", "cuda:0 (NVIDIA H100 ...)" where known.
std::string DeviceName(const c10::Device& device);

}  // namespace cnnviz
