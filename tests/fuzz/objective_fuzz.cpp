// Fuzzes the objective expression parser, cnnviz::ParseObjective (src/optvis/objective.cpp), e.g.
// "conv5:3 + 0.5*conv4:7@2,3 - 0.05*tv" or "dir(conv5, d.txt)".
// Input: the expression text. Expected: UsageError (syntax) and InputError (unreadable direction file).
// Checked besides: Objective::ToString() round-trips, i.e. parsing the canonical text succeeds and gives
// the same canonical text again (objective.h promises it).
//
// dir(LAYER, PATH) reads PATH. To keep the fuzzer inside its sandbox, inputs containing '/' are skipped
// and the process works in a scratch folder that holds d.txt ("1,2,3"), bad.txt ("1 x") and empty.txt.
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "cnnviz/optvis/objective.h"
#include "fuzz_util.h"

namespace {

void EnterSandbox() {
  static const bool done = [] {
    const auto& dir = cnnviz_fuzz::ScratchDir("objective");
    cnnviz_fuzz::WriteFile(dir / "d.txt", "1,2,3\n");
    cnnviz_fuzz::WriteFile(dir / "bad.txt", "1 x\n");
    cnnviz_fuzz::WriteFile(dir / "empty.txt", "");
    if (chdir(dir.c_str()) != 0) std::abort();
    return true;
  }();
  (void)done;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = cnnviz_fuzz::AsString(data, size);
  if (text.find('/') != std::string::npos) return -1;  // no paths outside the sandbox; not added to the corpus
  EnterSandbox();
  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] {
    const cnnviz::Objective objective = cnnviz::ParseObjective(text);
    const std::string canonical = objective.ToString();
    std::string again;
    try {
      again = cnnviz::ParseObjective(canonical).ToString();
    } catch (const cnnviz::Error& e) {
      std::fprintf(stderr, "canonical text '%s' of '%s' does not parse: %s\n", canonical.c_str(), text.c_str(), e.what());
      std::abort();
    }
    if (again != canonical) {
      std::fprintf(stderr, "round trip of '%s': '%s' became '%s'\n", text.c_str(), canonical.c_str(), again.c_str());
      std::abort();
    }
  });
  return 0;
}
