// Fuzzes the `--units` and list parsers of the cnnviz executable (apps/cnnviz/units.cpp):
// cnnviz::app::ParseUnits ("42", "0-63", "1,5,9-12", "all") and SplitList ("a,b,,c").
// Input: the option's text, as given on the command line. Expected: UsageError for bad syntax.
// Checked besides: every parsed unit is non-negative, and SplitList yields no empty item.
#include <cstdio>
#include <cstdlib>

#include "cnnviz/units.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = cnnviz_fuzz::AsString(data, size);
  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] {
    for (const int64_t unit : cnnviz::app::ParseUnits(text)) {
      if (unit < 0) {
        std::fprintf(stderr, "ParseUnits gave the negative unit %lld\n", static_cast<long long>(unit));
        std::abort();
      }
    }
  });
  for (const std::string& item : cnnviz::app::SplitList(text)) {
    if (item.empty()) {
      std::fprintf(stderr, "SplitList gave an empty item\n");
      std::abort();
    }
  }
  return 0;
}
