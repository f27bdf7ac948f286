#include "cnnviz/units.h"

#include <regex>
#include <sstream>

#include "cnnviz/core/error.h"

namespace cnnviz::app {

std::vector<int64_t> ParseUnits(const std::string& text) {
  if (text == "all") return {};
  if (text.find_first_not_of(" \t") == std::string::npos) throw UsageError("unit list is empty (give units or 'all')");
  static const std::regex kItem(R"(\s*(\d+)\s*(?:-\s*(\d+)\s*)?)");
  std::vector<int64_t> units;
  // Every item, empty ones included ("1," and "1,,2" have one).
  std::vector<std::string> items(1);
  for (char c : text) {
    if (c == ',') {
      items.emplace_back();
    } else {
      items.back().push_back(c);
    }
  }
  auto number = [&](const std::string& digits) {
    if (digits.size() > 8) throw UsageError("unit list '" + text + "': unit " + digits + " is too large (no layer has that many)");
    return std::stoll(digits);
  };
  for (const std::string& item : items) {
    std::smatch match;
    if (!std::regex_match(item, match, kItem)) {
      throw UsageError("unit list '" + text + "': '" + item + "' is not a unit or a range like 0-63");
    }
    const int64_t first = number(match[1].str());
    const int64_t last = match[2].matched ? number(match[2].str()) : first;
    if (last < first) throw UsageError("unit list '" + text + "': range " + item + " runs backwards");
    if (static_cast<int64_t>(units.size()) + (last - first + 1) > kMaxUnits) {
      throw UsageError("unit list '" + text + "' names more than " + std::to_string(kMaxUnits) + " units");
    }
    for (int64_t unit = first; unit <= last; ++unit) units.push_back(unit);
  }
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
