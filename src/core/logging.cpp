// Compiled without LibTorch's include paths (target cnnviz_logging): see cnnviz/core/logging.h.
#include "cnnviz/core/logging.h"

#include <spdlog/spdlog.h>

namespace cnnviz {

std::shared_ptr<spdlog::logger> Log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto existing = spdlog::get("cnnviz");
    if (existing) return existing;
    auto created = spdlog::default_logger()->clone("cnnviz");
    spdlog::register_logger(created);
    return created;
  }();
  return logger;
}

void LogDebug(const std::string& message) { Log()->debug(message); }
void LogInfo(const std::string& message) { Log()->info(message); }
void LogWarn(const std::string& message) { Log()->warn(message); }

}  // namespace cnnviz
