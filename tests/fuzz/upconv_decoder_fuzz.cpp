// Fuzzes the decoder file reader, cnnviz::UpconvDecoder::Load (src/methods/upconv_decoder.cpp).
// Input: one mode byte, then
//   even mode byte: the decoder file's bytes (a TorchScript zip archive), written as is;
//   odd mode byte:  the text of the "cnnviz_decoder" metadata (JSON), which the harness wraps in a valid
//                   archive without weights -- this reaches the metadata checks and the construction of
//                   the network from the metadata, which byte-level mutation of a zip rarely does.
// The file goes to <scratch>/decoder.pt and is loaded on the CPU. Expected: InputError.
#include <torch/serialize/output-archive.h>

#include "cnnviz/methods/upconv_decoder.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const std::string path = (cnnviz_fuzz::ScratchDir("upconv_decoder") / "decoder.pt").string();
  const std::string rest = cnnviz_fuzz::AsString(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    cnnviz_fuzz::WriteFile(path, rest);
  } else {
    torch::serialize::OutputArchive archive;
    archive.write("cnnviz_decoder", c10::IValue(rest));
    archive.save_to(path);
  }
  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] { cnnviz::UpconvDecoder::Load(path, c10::Device(c10::kCPU)); });
  return 0;
}
