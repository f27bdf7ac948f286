#include "cnnviz/io/grid.h"

#include <ATen/ATen.h>

#include <cmath>
#include <opencv2/imgproc.hpp>

#include "cnnviz/core/error.h"

namespace cnnviz {

at::Tensor MakeGrid(const at::Tensor& images, const std::vector<std::string>& captions, int64_t columns) {
  if (images.dim() != 4 || images.size(1) != 3) throw UsageError("MakeGrid expects images [N,3,H,W]");
  const int64_t n = images.size(0), height = images.size(2), width = images.size(3);
  if (columns <= 0) columns = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n)))));
  const int64_t rows = (n + columns - 1) / columns;
  constexpr int64_t kGap = 4;
  const double font_scale = std::clamp(static_cast<double>(width) / 200.0, 0.3, 0.8);
  int baseline = 0;
  const int text_height = cv::getTextSize("Ag", cv::FONT_HERSHEY_SIMPLEX, font_scale, 1, &baseline).height;
  const int64_t caption = captions.empty() ? 0 : text_height + baseline + 6;
  const int64_t cell_h = height + caption + kGap, cell_w = width + kGap;
  cv::Mat canvas(static_cast<int>(rows * cell_h + kGap), static_cast<int>(columns * cell_w + kGap), CV_8UC3,
                 cv::Scalar(255, 255, 255));
  const at::Tensor bytes =
      images.detach().to(at::kCPU, at::kFloat).clamp(0, 1).mul(255).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous();
  for (int64_t i = 0; i < n; ++i) {
    const int x = static_cast<int>(kGap + (i % columns) * cell_w), y = static_cast<int>(kGap + (i / columns) * cell_h);
    cv::Mat tile(static_cast<int>(height), static_cast<int>(width), CV_8UC3, bytes[i].data_ptr<uint8_t>());
    tile.copyTo(canvas(cv::Rect(x, y, static_cast<int>(width), static_cast<int>(height))));
    if (i < static_cast<int64_t>(captions.size())) {
      std::string text = captions[i];
      // Shorten from the left until it fits under the tile.
      while (text.size() > 3 &&
             cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, font_scale, 1, &baseline).width > width) {
        text = ".." + text.substr(3);
      }
      cv::putText(canvas, text, cv::Point(x, static_cast<int>(y + height + text_height + 3)), cv::FONT_HERSHEY_SIMPLEX,
                  font_scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    }
  }
  return at::from_blob(canvas.data, {canvas.rows, canvas.cols, 3}, at::kByte)
      .clone()
      .permute({2, 0, 1})
      .to(at::kFloat)
      .div(255.0);
}

}  // namespace cnnviz
