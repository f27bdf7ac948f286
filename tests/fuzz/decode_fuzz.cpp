// Fuzzes image decoding for label maps and images (src/io/decode.h): cnnviz::io_detail::DecodeRgb8 (the
// build's decoder: cv::imread with OpenCV) and, where libpng and libjpeg were found, DecodePngJpeg.
// Input: the file's bytes, written to <scratch>/image (the format is sniffed from the content).
// Expected: InputError. Checked besides: a decoded image is uint8 [H, W, 3] with H, W > 0.
//
// The decoders themselves are Debian's shared libraries, not instrumented: coverage guides the fuzzer
// only through cnnviz's wrappers, while ASan still sees their heap use through malloc/free.
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>

#include "fuzz_util.h"
#include "src/io/decode.h"

namespace {

void CheckImage(const at::Tensor& image, const char* decoder) {
  if (image.dim() != 3 || image.size(2) != 3 || image.size(0) < 1 || image.size(1) < 1 ||
      image.scalar_type() != at::kByte) {
    std::fprintf(stderr, "%s returned a tensor that is not uint8 [H, W, 3]\n", decoder);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = (cnnviz_fuzz::ScratchDir("decode") / "image").string();
  cnnviz_fuzz::WriteFile(path, cnnviz_fuzz::AsString(data, size));
  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] { CheckImage(cnnviz::io_detail::DecodeRgb8(path, "mask"), "DecodeRgb8"); });
#ifdef CNNVIZ_HAVE_PNG_JPEG
  cnnviz_fuzz::ExpectOnlyCnnvizErrors(
      [&] { CheckImage(cnnviz::io_detail::DecodePngJpeg(path, "mask"), "DecodePngJpeg"); });
#endif
  return 0;
}
