// Reduced precision (issue 21, first step): the network's forward pass under autocast, everything that
// must stay exact (thresholds, tallies, buffers) in float32 as before.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace cnnviz {

enum class Precision { kFp32, kBf16, kFp16 };

// "fp32", "bf16", "fp16" -> Precision; UsageError otherwise.
Precision ParsePrecision(const std::string& text);
std::string ToString(Precision precision);

// Whether this CPU executes bfloat16 natively (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo's flags), and
// the flag found ("avx512_bf16", "amx_bf16", or "" when none).
std::string CpuBf16Flag();

// Throws UsageError when `precision` cannot run on `device`: bf16 on a CPU without native bfloat16 (it
// would be emulated, slower than fp32), fp16 on a CPU (LibTorch's CPU autocast has bfloat16 only).
void CheckPrecision(Precision precision, const c10::Device& device);

// While alive, ops on `device` run under autocast at `precision` (this thread only; autocast state is
// thread-local); fp32 changes nothing. Restores the previous state and clears autocast's cast cache.
// With `float32_input_layer`, a network's first convolution of an image (few input channels; CPU,
// gradients recorded) stays float32: casting the image to bfloat16 (8-bit mantissa) hides pixel
// differences below ~0.4% of a value, which limits how closely an inversion can match its target
// features (bundled conv4, 200 steps: feature error 0.118 fp32, 0.113 bf16 with a float32 first layer,
// 0.170 without). It costs speed: the layers up to the next convolution run in float32 too.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, const c10::Device& device, bool float32_input_layer = false);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, cuda_ = false, was_enabled_ = false, was_float32_input_ = false;
  int dtype_ = 0;  // the previous autocast dtype (c10::ScalarType)
};

// Whether an AutocastGuard with float32_input_layer is alive on this thread (read by the Probe's
// first-layer convolution).
bool Float32InputLayer();

}  // namespace cnnviz
