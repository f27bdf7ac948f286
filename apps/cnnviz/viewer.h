// The static viewer: one HTML/JS/CSS app (apps/viewer/, embedded at build time) that renders the data a
// command writes. Commands write numbers and images, never HTML (docs/atlas.md).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace cnnviz::app {

class OutputFolder;

struct ViewerAsset {
  const char* name;  // "index.html", "viewer.js", "viewer.css"
  const char* text;
};
// The viewer's files, as built (generated from apps/viewer/ by cmake/EmbedFiles.cmake).
const std::vector<ViewerAsset>& ViewerAssets();

// `data` as the JavaScript file the viewer reads: "window.CNNVIZ_DATA = <json>;\n". Browsers refuse to
// fetch JSON from file://, but load scripts. ASCII-only (non-ASCII escaped), invalid UTF-8 replaced.
std::string ViewerData(const nlohmann::json& data);

// Writes data.js first, then the viewer's files, each atomically: a folder whose index.html exists has
// the data it reads.
void WriteViewer(const OutputFolder& out, const nlohmann::json& data);

}  // namespace cnnviz::app
