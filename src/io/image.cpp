#include "cnnviz/io/image.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cnnviz/core/error.h"
#include "cnnviz/io/atomic_file.h"
#include "decode.h"

namespace cnnviz {

void WritePng(const std::string& path, const at::Tensor& image) {
  if (image.dim() != 3 || (image.size(0) != 1 && image.size(0) != 3)) {
    throw UsageError("WritePng expects [C,H,W] with C = 1 or 3");
  }
  at::Tensor hwc = image.detach().to(at::kCPU, at::kFloat).clamp(0, 1).mul(255.0).round().to(at::kByte);
  hwc = hwc.permute({1, 2, 0}).contiguous();
#ifdef CNNVIZ_HAVE_PNG_JPEG
  const std::vector<uint8_t> bytes = io_detail::EncodePng(hwc);
#else
  const int channels = static_cast<int>(hwc.size(2));
  cv::Mat mat(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), channels == 3 ? CV_8UC3 : CV_8UC1,
              hwc.data_ptr<uint8_t>());
  cv::Mat out;
  if (channels == 3) {
    cv::cvtColor(mat, out, cv::COLOR_RGB2BGR);
  } else {
    out = mat;
  }
  std::vector<unsigned char> bytes;
  // Fast compression: figures are written by the hundred and read by people, not archived.
  if (!cv::imencode(".png", out, bytes, {cv::IMWRITE_PNG_COMPRESSION, 1})) {
    throw InputError("cannot encode PNG for '" + path + "'");
  }
#endif
  WriteFileAtomic(path, bytes);
}

}  // namespace cnnviz
