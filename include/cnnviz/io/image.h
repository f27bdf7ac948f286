// Image files <-> tensors. The only place besides io/ that would know about OpenCV is nowhere: tensors
// cross this boundary as float [C,H,W] in [0,1], RGB order.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace cnnviz {

// Reads a PNG/JPEG/... file as float [3,H,W] in [0,1], RGB (grayscale is expanded to 3 channels).
// Throws InputError naming the file when it is missing or cannot be decoded.
at::Tensor ReadImage(const std::string& path);

// Writes float [C,H,W] (C = 1 or 3) in [0,1] (clamped) as an 8-bit PNG, atomically.
void WritePng(const std::string& path, const at::Tensor& image);

}  // namespace cnnviz
