// Reader for the Broden dataset format (Bau et al., CVPR 2017; see docs/broden.md in the design notes):
// index.csv (columns by header name: image, split, ih, iw, sh, sw, then one per category), label.csv
// (primary category = the category a label occurs in most), images/ with JPEGs and label PNGs
// (label = R + 256 G). Several PNGs per category are allowed; integer cells are image-level labels.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cnnviz/data/segmentation_source.h"

namespace cnnviz {

struct BrodenOptions {
  // "train", "val" or "all". Default "all".
  std::string split = "all";
  // Keep only these categories (empty = all).
  std::vector<std::string> categories;
  // Use at most this many images, in index order (0 = all).
  size_t max_images = 0;
};

// Opens a Broden root. Throws InputError naming the file and problem for structural errors: missing
// index.csv or label.csv, missing columns, malformed rows, unknown categories or splits. Per-image
// problems (missing or corrupt image or mask, mask of the wrong size) surface when that image is
// loaded, so callers can skip it and count it.
std::unique_ptr<SegmentationSource> OpenBroden(const std::string& root, const BrodenOptions& options = {});

// `--dataset broden` resolves to $CNNVIZ_BRODEN, else ./dataset/broden1_224. Throws InputError saying
// how to get the data when neither exists.
std::string ResolveBrodenRoot(const std::string& dataset);

}  // namespace cnnviz
