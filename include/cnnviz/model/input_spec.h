// What a model expects as input, read from the JSON sidecar next to it (`model.pt` + `model.json`).
//
// Sidecar schema ("format": "cnnviz-sidecar-1"; every key optional):
//   {"input": {"size": [H, W], "channels": 3, "channel_order": "RGB"|"BGR", "range": [lo, hi],
//              "mean": [..], "std": [..]},
//    "labels": "labels.txt" | ["cat", "dog", ...],     // class names, a file path relative to the sidecar
//    "aliases": {"conv5": "features.10", ...},         // short names for module paths
//    "architecture": "alexnet", "notes": "..."}
// An image in [0,1] RGB becomes the model's input as: reorder channels, scale to `range`, then
// (x - mean) / std.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cnnviz {

// The largest input side cnnviz accepts (as --input-size): larger ones would not fit in memory.
constexpr int64_t kMaxInputSide = 8192;

struct InputSpec {
  // Input height and width in pixels. Default 224x224.
  int64_t height = 224;
  int64_t width = 224;
  // Number of input channels. Default 3.
  int64_t channels = 3;
  // "RGB" or "BGR": the order the model expects. Default "RGB".
  std::string channel_order = "RGB";
  // Value range of the input before normalization, e.g. [0,1] or [0,255]. Default [0,1].
  double range_low = 0.0;
  double range_high = 1.0;
  // Per-channel mean and std applied after scaling to the range. Default: ImageNet's.
  std::vector<double> mean = {0.485, 0.456, 0.406};
  std::vector<double> std = {0.229, 0.224, 0.225};
  // Class names, index = logit; empty when unknown.
  std::vector<std::string> labels;
  // Alias -> module path.
  std::map<std::string, std::string> aliases;
  // Free-form architecture name from the sidecar, or "".
  std::string architecture;
  // Where this spec came from: the sidecar path, or "defaults".
  std::string source = "defaults";

  // Throws UsageError when the fields are inconsistent (sizes, channel counts, std of zero).
  void Check() const;
};

// The sidecar path for a model file: "dir/model.pt" -> "dir/model.json".
std::string SidecarPathFor(const std::string& model_path);

// Reads a sidecar. Throws InputError naming the file and the problem when it is malformed.
InputSpec ReadInputSpec(const std::string& sidecar_path);

// Reads the sidecar next to `model_path` when present; otherwise returns defaults and `*missing` = true.
InputSpec ReadInputSpecFor(const std::string& model_path, bool* missing);

}  // namespace cnnviz
