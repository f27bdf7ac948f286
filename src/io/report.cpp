#include "cnnviz/io/report.h"

#include <cctype>
#include <chrono>
#include <ctime>

#include "cnnviz/core/device.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/atomic_file.h"

namespace cnnviz {

nlohmann::json ReportHeader(const std::string& command, const Model& model, uint64_t seed) {
  const InputSpec& spec = model.input_spec();
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char created[32];
  std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"cnnviz_version", Version()},
          {"torch_version", TorchVersion()},
          {"command", command},
          {"created", created},
          {"seed", seed},
          {"model",
           {{"path", model.path()},
            {"device", DeviceName(model.device())},
            {"input",
             {{"size", {spec.height, spec.width}},
              {"channel_order", spec.channel_order},
              {"range", {spec.range_low, spec.range_high}},
              {"mean", spec.mean},
              {"std", spec.std},
              {"source", spec.source}}}}}};
}

void WriteJson(const std::string& path, const nlohmann::json& doc) { WriteFileAtomic(path, doc.dump(2) + "\n"); }

std::string SafeFileName(const std::string& label) {
  std::string name;
  for (char c : label) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    name.push_back(keep ? c : '_');
  }
  return name;
}

}  // namespace cnnviz
