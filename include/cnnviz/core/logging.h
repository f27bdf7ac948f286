// The library logs through one named spdlog logger ("cnnviz") and never configures sinks; the CLI does.
// The library passes finished messages (LogInfo and friends), so that spdlog and its fmt stay out of
// the translation units that include LibTorch: PyTorch wheels bundle a newer fmt of their own, which
// Debian's spdlog cannot use. Applications format with Log()->info("...{}", x) after including
// <spdlog/spdlog.h> themselves.
#pragma once

#include <memory>
#include <string>

namespace spdlog {
class logger;
}  // namespace spdlog

namespace cnnviz {

// The "cnnviz" logger, created on first use with spdlog's default sink (stderr) if the application has
// not registered one.
std::shared_ptr<spdlog::logger> Log();

void LogDebug(const std::string& message);
void LogInfo(const std::string& message);
void LogWarn(const std::string& message);

}  // namespace cnnviz
