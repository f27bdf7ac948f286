#include "cnnviz/io/figures.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <opencv2/imgproc.hpp>

namespace cnnviz {
namespace {

at::Tensor MatToTensor(const cv::Mat& bgr) {
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, at::kByte).clone().permute({2, 0, 1}).to(at::kFloat).div(255.0);
}

const cv::Scalar kPalette[] = {{60, 76, 231}, {113, 204, 46}, {219, 152, 52}, {182, 89, 155},
                               {15, 196, 241}, {34, 126, 230}, {94, 73, 52}, {166, 165, 149}};

}  // namespace

at::Tensor OutlineMask(const at::Tensor& image, const at::Tensor& mask, const std::vector<float>& rgb) {
  const at::Tensor inside = mask.to(at::kFloat).unsqueeze(0).unsqueeze(0);
  // Boundary = inside pixels with an outside 4-neighbour (a 3x3 min-pool via max-pool of the inverse).
  const at::Tensor eroded = 1 - at::max_pool2d(1 - inside, {3, 3}, {1, 1}, {1, 1});
  const at::Tensor boundary = (inside - eroded).clamp(0, 1)[0][0] > 0;
  at::Tensor out = image.clone() * (0.45 + 0.55 * inside[0]);
  for (int64_t c = 0; c < 3; ++c) out[c].masked_fill_(boundary, rgb[c]);
  return out;
}

at::Tensor BarChart(const std::string& title, const std::vector<Bar>& bars, const std::vector<std::string>& groups) {
  constexpr int kRow = 18, kLabel = 150, kPlot = 320, kMargin = 10, kTitle = 28;
  const int rows = std::max<int>(1, static_cast<int>(bars.size()));
  const int legend = groups.empty() ? 0 : kRow + 4;
  cv::Mat canvas(kTitle + legend + rows * kRow + 2 * kMargin, kLabel + kPlot + 60, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(canvas, title, cv::Point(kMargin, 20), cv::FONT_HERSHEY_SIMPLEX, 0.55, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  int x = kMargin;
  for (size_t g = 0; g < groups.size(); ++g) {
    const cv::Scalar colour = kPalette[g % 8];
    cv::rectangle(canvas, cv::Rect(x, kTitle + 3, 12, 12), colour, cv::FILLED);
    cv::putText(canvas, groups[g], cv::Point(x + 16, kTitle + 14), cv::FONT_HERSHEY_SIMPLEX, 0.42, cv::Scalar(0, 0, 0), 1,
                cv::LINE_AA);
    x += 24 + 8 * static_cast<int>(groups[g].size());
  }
  double largest = 0;
  for (const Bar& bar : bars) largest = std::max(largest, bar.value);
  for (size_t i = 0; i < bars.size(); ++i) {
    const int y = kTitle + legend + kMargin + static_cast<int>(i) * kRow;
    cv::putText(canvas, bars[i].label, cv::Point(kMargin, y + 13), cv::FONT_HERSHEY_SIMPLEX, 0.42, cv::Scalar(0, 0, 0), 1,
                cv::LINE_AA);
    const int width = largest > 0 ? static_cast<int>(kPlot * bars[i].value / largest) : 0;
    cv::rectangle(canvas, cv::Rect(kLabel, y + 2, std::max(1, width), kRow - 4), kPalette[bars[i].group % 8], cv::FILLED);
    char value[32];
    std::snprintf(value, sizeof(value), "%g", bars[i].value);
    cv::putText(canvas, value, cv::Point(kLabel + width + 4, y + 13), cv::FONT_HERSHEY_SIMPLEX, 0.42, cv::Scalar(0, 0, 0), 1,
                cv::LINE_AA);
  }
  if (bars.empty()) {
    cv::putText(canvas, "no detectors", cv::Point(kLabel, kTitle + legend + kMargin + 13), cv::FONT_HERSHEY_SIMPLEX,
                0.42, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  return MatToTensor(canvas);
}

}  // namespace cnnviz
