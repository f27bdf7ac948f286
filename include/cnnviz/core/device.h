// Device selection: "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace cnnviz {

// Parses a --device value and checks that the device exists. Throws UsageError for a malformed value
// and ModelError when CUDA is asked for but not available.
c10::Device ResolveDevice(const std::string& spec);

// Threads that decode dataset batches ahead of a pass on `device`: `requested` when positive, else one
// on a CPU (the forward pass needs the cores) and up to 8 on a GPU (whose forward pass outruns one
// decoding thread), leaving a core for the caller.
size_t DecodeThreads(int64_t requested, const c10::Device& device);

// Human-readable name: "cpu", "cuda:0 (NVIDIA H100 ...)" where known.
std::string DeviceName(const c10::Device& device);

}  // namespace cnnviz
