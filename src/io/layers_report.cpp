#include "cnnviz/io/layers_report.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "cnnviz/core/version.h"

namespace cnnviz {
using nlohmann::json;

namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "x" : "") + std::to_string(shape[i]);
  return text.empty() ? "-" : text;
}

std::string FieldText(const LayerInfo& layer) {
  if (!layer.tappable) return "-";
  const ReceptiveField& rf = layer.receptive_field;
  if (rf.global) return rf.measured ? "global *" : "global";
  std::ostringstream out;
  out << rf.size[0] << "x" << rf.size[1] << " /" << rf.stride[0];
  if (rf.stride[1] != rf.stride[0]) out << "x" << rf.stride[1];
  out << " @" << rf.offset[0];
  if (rf.offset[1] != rf.offset[0]) out << "," << rf.offset[1];
  if (rf.measured) out << " *";
  return out.str();
}

}  // namespace

json LayersToJson(const Probe& probe) {
  const InputSpec& spec = probe.model().input_spec();
  json layers = json::array();
  for (const LayerInfo& layer : probe.layers()) {
    const ReceptiveField& rf = layer.receptive_field;
    layers.push_back({{"name", layer.name},
                      {"alias", layer.alias},
                      {"type", layer.type},
                      {"shape", layer.shape},
                      {"units", layer.units},
                      {"channel_axis", layer.channel_axis},
                      {"receptive_field",
                       {{"size", {rf.size[0], rf.size[1]}},
                        {"stride", {rf.stride[0], rf.stride[1]}},
                        {"offset", {rf.offset[0], rf.offset[1]}},
                        {"global", rf.global},
                        {"method", rf.measured ? "measured" : "analytic"},
                        {"unmodelled_op", rf.unmodelled_op}}},
                      {"tappable", layer.tappable},
                      {"note", layer.note}});
  }
  return {{"cnnviz_version", Version()},
          {"model", probe.model().path()},
          {"input",
           {{"size", {spec.height, spec.width}},
            {"channels", spec.channels},
            {"channel_order", spec.channel_order},
            {"range", {spec.range_low, spec.range_high}},
            {"mean", spec.mean},
            {"std", spec.std},
            {"source", spec.source}}},
          {"op_level_taps", probe.op_level()},
          {"layers", layers},
          {"warnings", probe.warnings()}};
}

std::string LayersToTable(const Probe& probe) {
  std::vector<std::vector<std::string>> rows = {{"layer", "alias", "type", "output", "units", "receptive field"}};
  for (const LayerInfo& layer : probe.layers()) {
    rows.push_back({layer.name, layer.alias.empty() ? "-" : layer.alias, layer.type, ShapeText(layer.shape),
                    layer.tappable ? std::to_string(layer.units) : "-", FieldText(layer)});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      out << std::left << std::setw(static_cast<int>(widths[c] + (c + 1 < row.size() ? 2 : 0))) << row[c];
    }
    out << '\n';
  }
  out << "receptive field: size /stride @centre of unit (0,0), in input pixels\n";
  bool measured = false;
  for (const LayerInfo& layer : probe.layers()) measured = measured || layer.receptive_field.measured;
  if (measured) {
    out << "* measured: support of the centre unit's input gradient at this input size (an op on the way is "
           "not modelled)\n";
  }
  return out.str();
}

}  // namespace cnnviz
