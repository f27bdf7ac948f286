// Labelled image grids: the one picture every method writes (grid.png), and headings over figures.
// Captions are never cut: they wrap at spaces onto more lines, shrink, and as a last resort break a
// word that is wider than its tile on its own.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace cnnviz {

// Lays out images [N,3,H,W] in [0,1] row by row, `columns` per row (0 = about square), each with its
// caption underneath on a white strip ('\n' starts a new line; long lines wrap). Every caption strip is
// as tall as the tallest caption needs. Returns [3,H',W'] in [0,1].
at::Tensor MakeGrid(const at::Tensor& images, const std::vector<std::string>& captions, int64_t columns = 0);

// `figure` [3,H,W] in [0,1] with `text` above it on a white strip, wrapped to the figure's width.
at::Tensor AddHeading(const at::Tensor& figure, const std::string& text);

// A caption laid out to fit `width` pixels: its lines and the font scale they are drawn at (Hershey
// simplex, thickness 1). `preferred_scale` shrinks down to `min_scale` before a word is broken.
struct CaptionLayout {
  std::vector<std::string> lines;
  double font_scale = 0;
  int line_height = 0;  // pixels per line, gap included
};
CaptionLayout LayoutCaption(const std::string& text, int width, double preferred_scale, double min_scale = 0.3);

// Width in pixels of `text` drawn at `font_scale`.
int CaptionWidth(const std::string& text, double font_scale);

}  // namespace cnnviz
