// NumPy .npy files (format version 1.0, little-endian float32, C order) for --save-arrays.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace cnnviz {

// Writes `array` as float32 .npy atomically; np.load(path) gives back the same shape and values.
void WriteNpy(const std::string& path, const at::Tensor& array);

}  // namespace cnnviz
