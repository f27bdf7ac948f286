#include <ATen/ATen.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/core/error.h"
#include "decode.h"

namespace cnnviz::io_detail {

at::Tensor DecodeRgb8(const std::string& path, const std::string& what) {
  if (!std::filesystem::exists(path)) throw InputError(what + " '" + path + "' is missing");
  CheckImageFile(path, what, what == "mask");
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  if (bgr.empty()) throw InputError(what + " '" + path + "' cannot be decoded (corrupt or unsupported format)");
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).clone();
}

}  // namespace cnnviz::io_detail
