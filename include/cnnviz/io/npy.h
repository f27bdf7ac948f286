// NumPy .npy files (format version 1.0, little-endian, C order) for --save-arrays: float32, or int64
// for integer tensors (exact counts), or float64 for double tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace cnnviz {

// Writes `array` atomically; np.load(path) gives back the same shape and values.
void WriteNpy(const std::string& path, const at::Tensor& array);

// Reads a .npy file (format 1.0, 2.0 or 3.0; C order; little-endian or byte-order-free dtypes f4, f8,
// f2, i1, i2, i4, i8, u1, b1) into a CPU tensor of that type. Throws InputError naming the file and the
// problem for anything else: bad magic, malformed header, Fortran order, big-endian data, unsupported
// dtype, a shape that does not match the file size. `what` names the file's role in messages.
at::Tensor ReadNpy(const std::string& path, const std::string& what = "array");

// The same from bytes in memory (the file's contents); `name` stands for the file in messages, e.g.
// "thresholds 't.npy'".
at::Tensor ParseNpy(const std::string& bytes, const std::string& name);

}  // namespace cnnviz
