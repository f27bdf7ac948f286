// Figures: captions wrap, shrink or break instead of being cut, and every character is drawn.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cnnviz/io/grid.h"

namespace cnnviz {
namespace {

std::string WithoutSpaces(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c != ' ' && c != '\n') out += c;
  }
  return out;
}

// Captions that earlier grids cut to "..tures.10:0", "..v2_x", ".. - 0.05*tv" and "..oder 14.5".
TEST(FiguresTest, CaptionsFitTheirTileAndKeepEveryCharacter) {
  const std::vector<std::string> captions = {
      "features.10:0", "shufflenet_v2_x1_0 features.3.0.branch2.7:115", "conv5:3 + 0.5*conv4:7 - 0.05*tv",
      "conv3 decoder\nPSNR 14.5 dB", "conv4:7#3\nf=8.797 (0.83x best image)", "averyveryverylongwordwithoutanyspaces"};
  for (int width : {32, 48, 64, 128, 224}) {
    for (const auto& text : captions) {
      const CaptionLayout layout = LayoutCaption(text, width, std::clamp(width / 200.0, 0.35, 0.8));
      std::string drawn;
      for (const auto& line : layout.lines) {
        EXPECT_LE(CaptionWidth(line, layout.font_scale), width) << "'" << line << "' of '" << text << "' at " << width;
        drawn += line;
      }
      EXPECT_EQ(WithoutSpaces(drawn), WithoutSpaces(text)) << width;
      EXPECT_GE(layout.font_scale, 0.3);
    }
  }
  // A caption that fits stays on one line at the preferred size.
  const CaptionLayout short_one = LayoutCaption("conv5:42", 128, 0.64);
  EXPECT_EQ(short_one.lines.size(), 1u);
  EXPECT_DOUBLE_EQ(short_one.font_scale, 0.64);
}

// Ink in rows [from, to) of a [3,H,W] figure.
double Ink(const at::Tensor& figure, int64_t from, int64_t to) {
  return (1 - figure.slice(1, from, to)).sum().item<double>();
}

TEST(FiguresTest, GridGrowsForWrappedCaptionsAndHeadingsSitAbove) {
  const at::Tensor images = at::zeros({2, 3, 48, 48});
  const at::Tensor one_line = MakeGrid(images, {"a", "b"});
  const at::Tensor wrapped = MakeGrid(images, {"a", "conv5:3 + 0.5*conv4:7 - 0.05*tv"});
  EXPECT_EQ(one_line.size(2), wrapped.size(2));
  EXPECT_GT(wrapped.size(1), one_line.size(1) + 20);
  // The last caption line is drawn: ink in the bottom band of the caption strip.
  const CaptionLayout layout = LayoutCaption("conv5:3 + 0.5*conv4:7 - 0.05*tv", 48, 0.35);
  const int64_t bottom = wrapped.size(1) - 4;
  EXPECT_GT(Ink(wrapped, bottom - layout.line_height, bottom), 1.0);

  const at::Tensor figure = at::ones({3, 40, 100}) * 0.5;
  const at::Tensor headed = AddHeading(figure, "conv4:3 (features.6), top 9 images of 207");
  EXPECT_EQ(headed.size(2), 100);
  EXPECT_GT(headed.size(1), 40);
  EXPECT_TRUE(at::allclose(headed.slice(1, headed.size(1) - 40), figure, 0, 1.0 / 255));
  EXPECT_GT(Ink(headed, 0, headed.size(1) - 40), 1.0);
}

}  // namespace
}  // namespace cnnviz
