// NumPy .npy files (format version 1.0, little-endian, C order) for --save-arrays: float32, or int64
// for integer tensors (exact counts), or float64 for double tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace cnnviz {

// Writes `array` atomically; np.load(path) gives back the same shape and values.
void WriteNpy(const std::string& path, const at::Tensor& array);

}  // namespace cnnviz
