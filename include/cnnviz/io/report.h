// report.json: the fields every method's report shares, and atomic JSON writing.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "cnnviz/model/model.h"

namespace cnnviz {

// {"cnnviz_version", "torch_version", "command", "model": {"path", "device", "input": {...}},
//  "seed", "created"}: the stable header of every report.
nlohmann::json ReportHeader(const std::string& command, const Model& model, uint64_t seed);

// Writes `doc` pretty-printed, atomically.
void WriteJson(const std::string& path, const nlohmann::json& doc);

// A double as Python's repr() writes it (what NetDissect-Lite's csv module writes): the shortest string
// that reads back to the same value, always with a '.' or an exponent: 1234.0, 0.25, 1e-05, 1.5e+16.
std::string PythonFloat(double value);

// A file-name-safe version of a label: "layer4.1.conv2:7#1" -> "layer4.1.conv2_7_1".
std::string SafeFileName(const std::string& label);

}  // namespace cnnviz
