#include <ATen/ATen.h>

#include <filesystem>

#include "cnnviz/core/error.h"
#include "cnnviz/io/image.h"
#include "decode.h"

namespace cnnviz {

at::Tensor ReadImage(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError("image '" + path + "' does not exist");
  return io_detail::DecodeRgb8(path, "image").permute({2, 0, 1}).to(at::kFloat).div_(255.0).contiguous();
}

}  // namespace cnnviz
