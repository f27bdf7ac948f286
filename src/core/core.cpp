#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <regex>
#include <thread>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/seed.h"
#include "cnnviz/core/version.h"

#ifndef CNNVIZ_VERSION
#define CNNVIZ_VERSION "unknown"
#endif

namespace cnnviz {

std::string FirstLine(const std::string& text) {
  auto end = text.find('\n');
  std::string line = text.substr(0, end);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

c10::Device ResolveDevice(const std::string& spec) {
  static const std::regex kPattern(R"(auto|cpu|cuda(:\d+)?)");
  if (!std::regex_match(spec, kPattern)) {
    throw UsageError("--device '" + spec + "' is not one of auto, cpu, cuda, cuda:N");
  }
  if (spec == "cpu") return c10::Device(c10::kCPU);
  const bool available = torch::cuda::is_available();
  if (spec == "auto") return available ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (!available) {
    throw ModelError("--device " + spec + " asked for CUDA, but this build or machine has no CUDA device");
  }
  c10::Device device(spec);
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  const int64_t index = device.has_index() ? device.index() : 0;
  if (index >= count) {
    throw ModelError("--device " + spec + ": only " + std::to_string(count) + " CUDA device(s) present");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

size_t DecodeThreads(int64_t requested, const c10::Device& device) {
  if (requested > 0) return static_cast<size_t>(requested);
  if (!device.is_cuda()) return 1;
  const int64_t cores = static_cast<int64_t>(std::thread::hardware_concurrency());
  return static_cast<size_t>(std::clamp<int64_t>(cores - 1, 1, 8));
}

std::string DeviceName(const c10::Device& device) { return device.str(); }

void SeedEverything(uint64_t seed) {
  at::manual_seed(seed);  // seeds CPU and, where present, every CUDA generator
}

std::string Version() { return CNNVIZ_VERSION; }

std::string TorchVersion() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace cnnviz
