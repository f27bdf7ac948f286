#include "cnnviz/io/figures.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <optional>
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

at::Tensor LineChart(const std::string& title, const std::vector<std::string>& x_labels,
                     const std::vector<Series>& series, const std::string& y_label) {
  constexpr int kLeft = 60, kRight = 20, kTop = 52, kBottom = 48, kPlotHeight = 220;
  const int columns = std::max<int>(1, static_cast<int>(x_labels.size()));
  const int step = std::max(70, 520 / columns);
  int legend_width = 8;
  for (const Series& line : series) legend_width += 26 + 8 * static_cast<int>(line.name.size());
  const int title_width = cv::getTextSize(title, cv::FONT_HERSHEY_SIMPLEX, 0.55, 1, nullptr).width + 16;
  const int width = std::max({kLeft + kRight + step * columns, title_width, legend_width});
  cv::Mat canvas(kTop + kPlotHeight + kBottom, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto text = [&](const std::string& s, int x, int y, double scale, const cv::Scalar& colour) {
    cv::putText(canvas, s, cv::Point(x, y), cv::FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv::LINE_AA);
  };
  text(title, 8, 18, 0.55, cv::Scalar(0, 0, 0));
  int legend_x = 8;
  for (const Series& line : series) {
    const cv::Scalar colour = kPalette[line.group % 8];
    cv::rectangle(canvas, cv::Rect(legend_x, 28, 12, 12), colour, cv::FILLED);
    text(line.name, legend_x + 16, 39, 0.42, cv::Scalar(0, 0, 0));
    legend_x += 26 + 8 * static_cast<int>(line.name.size());
  }
  double low = 0, high = 0;
  for (const Series& line : series) {
    for (double v : line.values) {
      if (std::isnan(v)) continue;
      low = std::min(low, v);
      high = std::max(high, v);
    }
  }
  if (high <= low) high = low + 1;
  const int y0 = kTop + kPlotHeight;
  const auto y_of = [&](double v) { return y0 - static_cast<int>((v - low) / (high - low) * (kPlotHeight - 10)); };
  const auto x_of = [&](size_t i) { return kLeft + step / 2 + static_cast<int>(i) * step; };
  const cv::Scalar axis(120, 120, 120);
  cv::line(canvas, cv::Point(kLeft, kTop), cv::Point(kLeft, y0), axis, 1);
  cv::line(canvas, cv::Point(kLeft, y0), cv::Point(width - kRight, y0), axis, 1);
  char value[32];
  for (double v : {low, high}) {
    std::snprintf(value, sizeof(value), "%g", v);
    text(value, 4, y_of(v) + 4, 0.4, cv::Scalar(0, 0, 0));
    cv::line(canvas, cv::Point(kLeft - 3, y_of(v)), cv::Point(kLeft, y_of(v)), axis, 1);
  }
  text(y_label, 4, kTop - 2, 0.38, cv::Scalar(80, 80, 80));
  for (size_t i = 0; i < x_labels.size(); ++i) {
    std::string label = x_labels[i];
    if (label.size() > 12) label = label.substr(0, 5) + ".." + label.substr(label.size() - 5);
    const int label_width = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, 0.4, 1, nullptr).width;
    text(label, x_of(i) - label_width / 2, y0 + 18 + (i % 2) * 14, 0.4, cv::Scalar(0, 0, 0));
  }
  for (const Series& line : series) {
    const cv::Scalar colour = kPalette[line.group % 8];
    std::optional<cv::Point> previous;
    for (size_t i = 0; i < line.values.size() && i < x_labels.size(); ++i) {
      if (std::isnan(line.values[i])) {
        previous.reset();
        continue;
      }
      const cv::Point point(x_of(i), y_of(line.values[i]));
      if (previous) cv::line(canvas, *previous, point, colour, 2, cv::LINE_AA);
      cv::circle(canvas, point, 3, colour, cv::FILLED, cv::LINE_AA);
      std::snprintf(value, sizeof(value), "%.3g", line.values[i]);
      text(value, point.x + 4, point.y - 4, 0.36, colour);
      previous = point;
    }
  }
  return MatToTensor(canvas);
}

}  // namespace cnnviz
