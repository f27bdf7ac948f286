// Lists on the command line: units ("42", "0-63", "1,5,9-12", "all") and comma-separated names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz::app {

// The most units a list may name (no layer has more channels; a typo such as 0-3000000000 must not
// allocate billions).
constexpr int64_t kMaxUnits = 1000000;

// Parses a unit list; "all" gives an empty vector (= every unit). Throws UsageError on bad syntax, an
// empty list or item ("", "1,", "1,,2"), a unit above 99,999,999 or more than kMaxUnits units.
std::vector<int64_t> ParseUnits(const std::string& text);

// Splits "a,b,,c" into {"a", "b", "c"} (layer and category lists).
std::vector<std::string> SplitList(const std::string& text);

}  // namespace cnnviz::app
