#include "cnnviz/viewer.h"

#include "cnnviz/common.h"
#include "cnnviz/io/atomic_file.h"

namespace cnnviz::app {

std::string ViewerData(const nlohmann::json& data) {
  return "window.CNNVIZ_DATA = " + data.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace) +
         ";\n";
}

void WriteViewer(const OutputFolder& out, const nlohmann::json& data) {
  WriteFileAtomic(out.File("data.js"), ViewerData(data));
  for (const ViewerAsset& asset : ViewerAssets()) WriteFileAtomic(out.File(asset.name), asset.text);
}

}  // namespace cnnviz::app
