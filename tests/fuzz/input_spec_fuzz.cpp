// Fuzzes the model sidecar reader, cnnviz::ReadInputSpec (src/model/input_spec.cpp): the JSON file next
// to a model ("input": size, channels, range, mean, std; "labels"; "aliases"; "architecture").
// Input: the sidecar's text, written to <scratch>/model.json; the scratch folder also holds labels.txt so
// that "labels": "labels.txt" resolves. Expected: InputError (UsageError from InputSpec::Check is turned
// into InputError by the reader). Checked besides: a spec that reads back passes InputSpec::Check().
#include "cnnviz/model/input_spec.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = [] {
    const auto& scratch = cnnviz_fuzz::ScratchDir("input_spec");
    cnnviz_fuzz::WriteFile(scratch / "labels.txt", "cat\ndog\r\n\n");
    return scratch;
  }();
  const std::filesystem::path sidecar = dir / "model.json";
  cnnviz_fuzz::WriteFile(sidecar, cnnviz_fuzz::AsString(data, size));
  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] {
    const cnnviz::InputSpec spec = cnnviz::ReadInputSpec(sidecar.string());
    try {
      spec.Check();
    } catch (const cnnviz::UsageError& e) {
      std::fprintf(stderr, "ReadInputSpec returned a spec that fails Check(): %s\n", e.what());
      std::abort();
    }
  });
  return 0;
}
