// The library logs through one named spdlog logger ("cnnviz") and never configures sinks; the CLI does.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>

namespace cnnviz {

// The "cnnviz" logger, created on first use with spdlog's default sink (stderr) if the application has
// not registered one.
std::shared_ptr<spdlog::logger> Log();

}  // namespace cnnviz
