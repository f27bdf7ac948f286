// Fuzzes the Broden dataset reader, cnnviz::OpenBroden (src/io/broden.cpp), and per-image loading.
// Input: one options byte, then the CSV files separated by NUL bytes:
//   options: bits 0-1 split (all, train, val, "bogus"), bit 2 --categories ndl, bit 3 max_images = 2;
//   part 0: label.csv   part 1: index.csv   part 2: category.csv (absent when there is no part 2)
//   part 3...: "NAME\n" + contents of c_NAME.csv (NAME reduced to [A-Za-z0-9_], at most 16 characters).
// The files are written into <scratch>/root/, whose images/ folder holds two 4x4 masks, m.png (RGB) and
// g.png (grey); a missing or mismatched mask is an InputError. After opening, the harness loads the
// segmentation and the image of the first rows.
// Expected: InputError, and UsageError for the bogus split. Checked besides: what the reader returns is
// consistent (image-level labels are label numbers of label.csv, label categories index categories()).
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cnnviz/io/broden.h"
#include "fuzz_util.h"

namespace {

// Two 4x4 PNGs written by a few lines of Python (zlib + struct): RGB with R in {0,2,3,5}, and grey.
constexpr unsigned char kMaskRgb[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x26, 0x93, 0x09, 0x29, 0x00, 0x00, 0x00, 0x14, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x60, 0x62, 0x60, 0x60, 0x66, 0x00, 0x01, 0x56, 0x20, 0x26, 0x8e, 0x03, 0x00,
    0x04, 0x48, 0x00, 0x29, 0xcd, 0x5a, 0x81, 0xec, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60,
    0x82};
constexpr unsigned char kMaskGrey[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x8c, 0x9a, 0xc1, 0xa2, 0x00, 0x00, 0x00,
    0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x60, 0x64, 0x62, 0x66, 0x60, 0x40, 0x25, 0x00, 0x01, 0x08,
    0x00, 0x19, 0x11, 0x3c, 0x11, 0x7c, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

[[noreturn]] void Inconsistent(const std::string& what) {
  std::fprintf(stderr, "OpenBroden: %s\n", what.c_str());
  std::abort();
}

std::filesystem::path PrepareRoot() {
  static const std::filesystem::path root = [] {
    const std::filesystem::path path = cnnviz_fuzz::ScratchDir("broden") / "root";
    std::filesystem::create_directories(path / "images");
    cnnviz_fuzz::WriteFile(path / "images" / "m.png", std::string(reinterpret_cast<const char*>(kMaskRgb), sizeof(kMaskRgb)));
    cnnviz_fuzz::WriteFile(path / "images" / "g.png", std::string(reinterpret_cast<const char*>(kMaskGrey), sizeof(kMaskGrey)));
    return path;
  }();
  // Only the previous input's CSV files go; images/ stays.
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (entry.is_regular_file()) std::filesystem::remove(entry.path());
  }
  return root;
}

std::vector<std::string> SplitParts(const std::string& text) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == '\0') {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  return parts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::filesystem::path root = PrepareRoot();
  const uint8_t flags = data[0];
  const std::vector<std::string> parts = SplitParts(cnnviz_fuzz::AsString(data + 1, size - 1));
  cnnviz_fuzz::WriteFile(root / "label.csv", parts[0]);
  if (parts.size() > 1) cnnviz_fuzz::WriteFile(root / "index.csv", parts[1]);
  if (parts.size() > 2) cnnviz_fuzz::WriteFile(root / "category.csv", parts[2]);
  for (size_t i = 3; i < parts.size(); ++i) {
    const size_t newline = parts[i].find('\n');
    std::string name;
    for (char c : parts[i].substr(0, newline)) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') name.push_back(c);
    }
    if (name.empty() || name.size() > 16) continue;
    cnnviz_fuzz::WriteFile(root / ("c_" + name + ".csv"), newline == std::string::npos ? "" : parts[i].substr(newline + 1));
  }

  cnnviz::BrodenOptions options;
  static const char* kSplits[] = {"all", "train", "val", "bogus"};
  options.split = kSplits[flags & 3];
  if (flags & 4) options.categories = {"ndl"};
  if (flags & 8) options.max_images = 2;

  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] {
    const auto source = cnnviz::OpenBroden(root.string(), options);
    const auto& labels = source->labels();
    const auto& categories = source->categories();
    for (const auto& label : labels) {
      if (label.category < -1 || label.category >= static_cast<int64_t>(categories.size())) {
        Inconsistent("label " + std::to_string(label.number) + " has the category index " + std::to_string(label.category));
      }
    }
    if (source->size() == 0) Inconsistent("an opened dataset has no images");
    for (size_t i = 0; i < std::min<size_t>(source->size(), 3); ++i) {
      (void)source->Name(i);
      cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] {
        const cnnviz::Segmentation segmentation = source->LoadSegmentation(i);
        if (segmentation.pixel.size() != categories.size() || segmentation.image.size() != categories.size()) {
          Inconsistent("a segmentation does not have one entry per category");
        }
        for (const auto& per_category : segmentation.image) {
          for (const int64_t number : per_category) {
            if (number <= 0 || number >= static_cast<int64_t>(labels.size())) {
              Inconsistent("image-level label " + std::to_string(number) + " is not in label.csv");
            }
          }
        }
      });
      cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] { (void)source->Load(i); });
    }
  });
  return 0;
}
