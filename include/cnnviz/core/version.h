// Version strings that go into every report.
#pragma once

#include <string>

namespace cnnviz {

// cnnviz's own version, e.g. "0.1.0".
std::string Version();
// The LibTorch version cnnviz was compiled against, e.g. "1.13.0".
std::string TorchVersion();

}  // namespace cnnviz
