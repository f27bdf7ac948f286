#include "cnnviz/model/input_spec.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace fs = std::filesystem;
using nlohmann::json;

void InputSpec::Check() const {
  if (height < 1 || width < 1 || height > kMaxInputSide || width > kMaxInputSide) {
    throw UsageError("input size " + std::to_string(height) + "x" + std::to_string(width) + " must be from 1 to " +
                     std::to_string(kMaxInputSide) + " pixels a side");
  }
  if (channels != 1 && channels != 3) {
    throw UsageError("input channels must be 1 or 3, not " + std::to_string(channels));
  }
  if (channel_order != "RGB" && channel_order != "BGR") {
    throw UsageError("channel_order must be RGB or BGR, not '" + channel_order + "'");
  }
  if (!(range_high > range_low) || !std::isfinite(range_low) || !std::isfinite(range_high)) {
    throw UsageError("input range must be finite with low < high");
  }
  if (static_cast<int64_t>(mean.size()) != channels || static_cast<int64_t>(std.size()) != channels) {
    throw UsageError("mean and std need one value per input channel (" + std::to_string(channels) + ")");
  }
  for (double s : std) {
    if (!(s > 0) || !std::isfinite(s)) throw UsageError("every std value must be positive and finite");
  }
  for (double m : mean) {
    if (!std::isfinite(m)) throw UsageError("every mean value must be finite");
  }
}

std::string SidecarPathFor(const std::string& model_path) {
  return fs::path(model_path).replace_extension(".json").string();
}

namespace {

std::vector<std::string> ReadLabelsFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError("labels file '" + path.string() + "' cannot be read");
  std::vector<std::string> labels;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  while (!labels.empty() && labels.back().empty()) labels.pop_back();
  return labels;
}

template <typename T>
T Get(const json& object, const char* key, const std::string& where) {
  try {
    return object.at(key).get<T>();
  } catch (const json::exception&) {
    throw InputError(where + ": key '" + key + "' has the wrong type");
  }
}

}  // namespace

InputSpec ReadInputSpec(const std::string& sidecar_path) {
  std::ifstream in(sidecar_path);
  if (!in) throw InputError("sidecar '" + sidecar_path + "' cannot be read");
  json doc;
  try {
    in >> doc;
  } catch (const json::parse_error& e) {
    throw InputError("sidecar '" + sidecar_path + "' is not valid JSON: " + FirstLine(e.what()));
  }
  if (!doc.is_object()) throw InputError("sidecar '" + sidecar_path + "' must hold a JSON object");
  InputSpec spec;
  spec.source = sidecar_path;
  const std::string& where = sidecar_path;
  if (doc.contains("input")) {
    const json& input = doc["input"];
    if (!input.is_object()) throw InputError(where + ": 'input' must be an object");
    if (input.contains("size")) {
      const json& given = input["size"];
      for (const json& side : given.is_array() ? given : json::array({given})) {
        if (!side.is_number_integer()) {
          throw InputError(where + ": input.size must be whole numbers of pixels, not " + given.dump());
        }
      }
      auto size = Get<std::vector<int64_t>>(input, "size", where);
      if (size.size() == 1) size.push_back(size[0]);
      if (size.size() != 2) throw InputError(where + ": input.size must be [H, W]");
      spec.height = size[0];
      spec.width = size[1];
    }
    if (input.contains("channels")) spec.channels = Get<int64_t>(input, "channels", where);
    if (input.contains("channel_order")) spec.channel_order = Get<std::string>(input, "channel_order", where);
    if (input.contains("range")) {
      auto range = Get<std::vector<double>>(input, "range", where);
      if (range.size() != 2) throw InputError(where + ": input.range must be [low, high]");
      spec.range_low = range[0];
      spec.range_high = range[1];
    }
    if (input.contains("mean")) spec.mean = Get<std::vector<double>>(input, "mean", where);
    if (input.contains("std")) spec.std = Get<std::vector<double>>(input, "std", where);
  }
  if (doc.contains("labels")) {
    const json& labels = doc["labels"];
    if (labels.is_string()) {
      spec.labels = ReadLabelsFile(fs::path(sidecar_path).parent_path() / labels.get<std::string>());
    } else {
      spec.labels = Get<std::vector<std::string>>(doc, "labels", where);
    }
  }
  if (doc.contains("aliases")) spec.aliases = Get<std::map<std::string, std::string>>(doc, "aliases", where);
  if (doc.contains("architecture")) spec.architecture = Get<std::string>(doc, "architecture", where);
  try {
    spec.Check();
  } catch (const UsageError& e) {
    throw InputError(where + ": " + e.what());
  }
  return spec;
}

InputSpec ReadInputSpecFor(const std::string& model_path, bool* missing) {
  const std::string sidecar = SidecarPathFor(model_path);
  const bool exists = fs::exists(sidecar);
  if (missing) *missing = !exists;
  return exists ? ReadInputSpec(sidecar) : InputSpec{};
}

}  // namespace cnnviz
