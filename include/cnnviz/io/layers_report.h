// The layer catalogue as stable JSON and as a human-readable table (`cnnviz layers`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "cnnviz/model/probe.h"

namespace cnnviz {

// {"model": path, "input": {...}, "layers": [{"name", "alias", "type", "shape", "units",
//  "receptive_field": {"size": [h, w], "stride": [h, w], "offset": [y, x], "global": bool},
//  "tappable", "note"}], "warnings": [...]}. Field names are stable.
nlohmann::json LayersToJson(const Probe& probe);

// One line per layer, aligned columns, for terminals.
std::string LayersToTable(const Probe& probe);

}  // namespace cnnviz
