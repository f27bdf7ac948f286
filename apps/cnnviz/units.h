// Lists on the command line: units ("42", "0-63", "1,5,9-12", "all") and comma-separated names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz::app {

// Parses a unit list; "all" gives an empty vector (= every unit). Throws UsageError on bad syntax.
std::vector<int64_t> ParseUnits(const std::string& text);

// Splits "a,b,,c" into {"a", "b", "c"} (layer and category lists).
std::vector<std::string> SplitList(const std::string& text);

}  // namespace cnnviz::app
