// Reader for the Broden dataset format (Bau et al., CVPR 2017; see docs/broden.md in the design notes):
// index.csv (columns by header name: image, split, ih, iw, sh, sw, then one per category), label.csv,
// category.csv (category order), c_<category>.csv (coverage), images/ with JPEGs and label PNGs
// (label = R + 256 G). Several PNGs per category are allowed; integer cells are image-level labels.
// As NetDissect-Lite (loader/data_loader.py): categories in category.csv's order; a label's primary
// category is the chosen category with the largest coverage of it in c_<category>.csv, ties to the later
// category (label.csv counts stand in without c_ files); images with no label in the chosen categories
// are left out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cnnviz/data/segmentation_source.h"

namespace cnnviz {

struct BrodenOptions {
  // "train", "val" or "all". Default "all".
  std::string split = "all";
  // Keep only these categories (empty = all; {"ndl"} = NetDissect-Lite's default set: object, part,
  // scene, texture, color, those the dataset has).
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
