// Image decoding behind cnnviz::io (and PNG encoding with libpng): one function, two implementations chosen at build time. With OpenCV
// (decode_opencv.cpp) it is cv::imread; without it (decode_png_jpeg.cpp) libpng and libjpeg decode the
// two formats Broden and image folders use, so the dataset readers build where OpenCV is missing (the
// GPU machine). Private to src/io.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz::io_detail {

// Decodes `path` as 8-bit RGB: uint8 [H, W, 3]. Grey and palette images are expanded, alpha dropped.
// Throws InputError "<what> '<path>' is missing" or "... cannot be decoded (...)".
at::Tensor DecodeRgb8(const std::string& path, const std::string& what);

// Header and end checks decoders do not make (src/io/image_check.cpp): a truncated PNG or JPEG; with
// `label_map`, anything but an 8-bit RGB(A) or palette PNG. Throws InputError naming the file.
void CheckImageFile(const std::string& path, const std::string& what, bool label_map);

// The libpng/libjpeg decoder by itself (PNG and JPEG only), the build's DecodeRgb8 without OpenCV. It is
// compiled whenever both libraries are found, so that builds with OpenCV test it against cv::imread.
at::Tensor DecodePngJpeg(const std::string& path, const std::string& what);

// PNG bytes of uint8 [H, W, C] (C = 1 or 3) through libpng, built with it. Throws InputError.
std::vector<uint8_t> EncodePng(const at::Tensor& hwc);

}  // namespace cnnviz::io_detail
