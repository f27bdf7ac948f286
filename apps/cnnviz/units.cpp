#include "cnnviz/units.h"

#include <regex>
#include <sstream>

#include "cnnviz/core/error.h"

namespace cnnviz::app {

std::vector<int64_t> ParseUnits(const std::string& text) {
  if (text == "all") return {};
  static const std::regex kItem(R"(\s*(\d+)\s*(?:-\s*(\d+)\s*)?)");
  std::vector<int64_t> units;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    std::smatch match;
    if (!std::regex_match(item, match, kItem)) {
      throw UsageError("unit list '" + text + "': '" + item + "' is not a unit or a range like 0-63");
    }
    const int64_t first = std::stoll(match[1].str());
    const int64_t last = match[2].matched ? std::stoll(match[2].str()) : first;
    if (last < first) throw UsageError("unit list '" + text + "': range " + item + " runs backwards");
    for (int64_t unit = first; unit <= last; ++unit) units.push_back(unit);
  }
  if (units.empty()) throw UsageError("unit list is empty");
  return units;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

}  // namespace cnnviz::app
