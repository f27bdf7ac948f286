// Figures for reports: activation masks outlined on images, bar charts.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace cnnviz {

// Image [3,H,W] in [0,1] with the boundary of `mask` [H,W] (bool) drawn in `rgb`, and the outside
// dimmed so the region stands out.
at::Tensor OutlineMask(const at::Tensor& image, const at::Tensor& mask, const std::vector<float>& rgb = {1.f, 1.f, 0.f});

struct Bar {
  std::string label;  // e.g. "red-c"
  double value = 0;
  int group = 0;      // colour group (e.g. category index)
};

// Horizontal bar chart, one row per bar in the given order, with a title. Returns [3,H,W] in [0,1].
at::Tensor BarChart(const std::string& title, const std::vector<Bar>& bars, const std::vector<std::string>& groups);

// One line of a LineChart: a value per x position (NaN = no point), coloured by `group`.
struct Series {
  std::string name;
  std::vector<double> values;
  int group = 0;
};

// Line chart of several series over named x positions (layers by depth), with the title, a legend, the
// y axis from 0 (or the smallest value, when negative) to the largest value with its label, and every
// point's value written beside it. Returns [3,H,W] in [0,1].
at::Tensor LineChart(const std::string& title, const std::vector<std::string>& x_labels,
                     const std::vector<Series>& series, const std::string& y_label);

}  // namespace cnnviz
