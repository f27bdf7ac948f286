#include "cnnviz/io/grid.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::string line;
  std::istringstream in(text);
  while (std::getline(in, line)) lines.push_back(line);
  if (lines.empty()) lines.emplace_back();
  return lines;
}

// Greedy word wrap of one line; a word wider than `width` on its own is broken between characters.
std::vector<std::string> Wrap(const std::string& line, int width, double scale) {
  std::vector<std::string> words, out;
  std::istringstream in(line);
  for (std::string word; in >> word;) words.push_back(word);
  std::string current;
  for (std::string word : words) {
    const std::string joined = current.empty() ? word : current + " " + word;
    if (CaptionWidth(joined, scale) <= width) {
      current = joined;
      continue;
    }
    if (!current.empty()) out.push_back(current);
    current.clear();
    while (CaptionWidth(word, scale) > width && word.size() > 1) {
      size_t take = 1;
      while (take < word.size() && CaptionWidth(word.substr(0, take + 1), scale) <= width) ++take;
      out.push_back(word.substr(0, take));
      word = word.substr(take);
    }
    current = word;
  }
  if (!current.empty() || out.empty()) out.push_back(current);
  return out;
}

bool WordsFit(const std::string& text, int width, double scale) {
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    if (CaptionWidth(word, scale) > width) return false;
  }
  return true;
}

cv::Mat ToMat(const at::Tensor& image) {
  const at::Tensor bytes = image.detach().to(at::kCPU, at::kFloat).clamp(0, 1).mul(255).round().to(at::kByte).permute({1, 2, 0}).contiguous();
  return cv::Mat(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC3, bytes.data_ptr<uint8_t>()).clone();
}

at::Tensor FromMat(const cv::Mat& canvas) {
  return at::from_blob(canvas.data, {canvas.rows, canvas.cols, 3}, at::kByte).clone().permute({2, 0, 1}).to(at::kFloat).div(255.0);
}

void DrawLines(cv::Mat& canvas, const CaptionLayout& layout, int x, int y) {
  for (size_t l = 0; l < layout.lines.size(); ++l) {
    cv::putText(canvas, layout.lines[l], cv::Point(x, y + static_cast<int>(l + 1) * layout.line_height - 3), kFont,
                layout.font_scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
}

}  // namespace

int CaptionWidth(const std::string& text, double font_scale) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, font_scale, 1, &baseline).width;
}

CaptionLayout LayoutCaption(const std::string& text, int width, double preferred_scale, double min_scale) {
  CaptionLayout layout;
  width = std::max(width, 1);
  double scale = std::max(preferred_scale, min_scale);
  // Shrink (in steps of 10%) until every word fits on a line of its own, but not below min_scale.
  while (scale > min_scale && !WordsFit(text, width, scale)) scale = std::max(min_scale, scale * 0.9);
  layout.font_scale = scale;
  for (const std::string& line : SplitLines(text)) {
    for (std::string& wrapped : Wrap(line, width, scale)) layout.lines.push_back(std::move(wrapped));
  }
  int baseline = 0;
  const int text_height = cv::getTextSize("Ag", kFont, scale, 1, &baseline).height;
  layout.line_height = text_height + baseline + 4;
  return layout;
}

at::Tensor MakeGrid(const at::Tensor& images, const std::vector<std::string>& captions, int64_t columns) {
  if (images.dim() != 4 || images.size(1) != 3) throw UsageError("MakeGrid expects images [N,3,H,W]");
  const int64_t n = images.size(0), height = images.size(2), width = images.size(3);
  if (columns <= 0) columns = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n)))));
  const int64_t rows = (n + columns - 1) / columns;
  constexpr int64_t kGap = 4;
  const double font_scale = std::clamp(static_cast<double>(width) / 300.0, 0.35, 0.6);
  std::vector<CaptionLayout> layouts;
  int64_t caption = 0;
  for (size_t i = 0; i < captions.size() && static_cast<int64_t>(i) < n; ++i) {
    layouts.push_back(LayoutCaption(captions[i], static_cast<int>(width), font_scale));
    caption = std::max<int64_t>(caption, static_cast<int64_t>(layouts.back().lines.size()) * layouts.back().line_height + 2);
  }
  const int64_t cell_h = height + caption + kGap, cell_w = width + kGap;
  cv::Mat canvas(static_cast<int>(rows * cell_h + kGap), static_cast<int>(columns * cell_w + kGap), CV_8UC3,
                 cv::Scalar(255, 255, 255));
  const at::Tensor bytes =
      images.detach().to(at::kCPU, at::kFloat).clamp(0, 1).mul(255).round().to(at::kByte).permute({0, 2, 3, 1}).contiguous();
  for (int64_t i = 0; i < n; ++i) {
    const int x = static_cast<int>(kGap + (i % columns) * cell_w), y = static_cast<int>(kGap + (i / columns) * cell_h);
    cv::Mat tile(static_cast<int>(height), static_cast<int>(width), CV_8UC3, bytes[i].data_ptr<uint8_t>());
    tile.copyTo(canvas(cv::Rect(x, y, static_cast<int>(width), static_cast<int>(height))));
    if (i < static_cast<int64_t>(layouts.size())) DrawLines(canvas, layouts[i], x, static_cast<int>(y + height + 1));
  }
  return FromMat(canvas);
}

at::Tensor AddHeading(const at::Tensor& figure, const std::string& text) {
  if (figure.dim() != 3 || figure.size(0) != 3) throw UsageError("AddHeading expects a figure [3,H,W]");
  constexpr int kMargin = 4;
  const int width = static_cast<int>(figure.size(2));
  const CaptionLayout layout = LayoutCaption(text, width - 2 * kMargin, 0.5);
  const int strip = static_cast<int>(layout.lines.size()) * layout.line_height + kMargin;
  cv::Mat canvas(strip + static_cast<int>(figure.size(1)), width, CV_8UC3, cv::Scalar(255, 255, 255));
  DrawLines(canvas, layout, kMargin, kMargin / 2);
  ToMat(figure).copyTo(canvas(cv::Rect(0, strip, width, static_cast<int>(figure.size(1)))));
  return FromMat(canvas);
}

}  // namespace cnnviz
