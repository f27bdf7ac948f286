#include "cnnviz/core/precision.h"

#include <ATen/autocast_mode.h>

#include <fstream>
#include <sstream>

#include "cnnviz/core/error.h"

namespace cnnviz {

Precision ParsePrecision(const std::string& text) {
  if (text == "fp32") return Precision::kFp32;
  if (text == "bf16") return Precision::kBf16;
  if (text == "fp16") return Precision::kFp16;
  throw UsageError("--precision must be fp32, bf16 or fp16, not '" + text + "'");
}

std::string ToString(Precision precision) {
  switch (precision) {
    case Precision::kBf16: return "bf16";
    case Precision::kFp16: return "fp16";
    default: return "fp32";
  }
}

std::string CpuBf16Flag() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string found;
    for (std::string word; words >> word;) {
      if (word == "amx_bf16") return word;
      if (word == "avx512_bf16") found = word;
    }
    return found;
  }
  return "";
}

void CheckPrecision(Precision precision, const c10::Device& device) {
  if (precision == Precision::kFp32 || device.is_cuda()) return;
  if (precision == Precision::kFp16) {
    throw UsageError("--precision fp16 runs on CUDA only (LibTorch's CPU autocast has bfloat16): use bf16 or fp32");
  }
  if (CpuBf16Flag().empty()) {
    throw UsageError("--precision bf16: this CPU has no native bfloat16 (neither avx512_bf16 nor amx_bf16 in "
                     "/proc/cpuinfo), where it would run slower than fp32; use fp32");
  }
}

namespace {
thread_local bool float32_input_layer = false;
}  // namespace

bool Float32InputLayer() { return float32_input_layer; }

AutocastGuard::AutocastGuard(Precision precision, const c10::Device& device, bool float32_input) {
  if (precision == Precision::kFp32) return;
  active_ = true;
  was_float32_input_ = float32_input_layer;
  float32_input_layer = float32_input;
  cuda_ = device.is_cuda();
  const at::ScalarType dtype = precision == Precision::kFp16 ? at::kHalf : at::kBFloat16;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    dtype_ = static_cast<int>(at::autocast::get_autocast_gpu_dtype());
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    dtype_ = static_cast<int>(at::autocast::get_autocast_cpu_dtype());
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(true);
  }
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  float32_input_layer = was_float32_input_;
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(static_cast<at::ScalarType>(dtype_));
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(static_cast<at::ScalarType>(dtype_));
  }
  at::autocast::clear_cache();
}

}  // namespace cnnviz
