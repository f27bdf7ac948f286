// Fuzzes the .npy reader, cnnviz::ParseNpy (src/io/npy.cpp), in memory.
// Input: the file's bytes. Expected: InputError. Checked besides: a parsed array has as many bytes as the
// data part of the input can hold (numel * element size <= input size).
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>

#include "cnnviz/io/npy.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes = cnnviz_fuzz::AsString(data, size);
  cnnviz_fuzz::ExpectOnlyCnnvizErrors([&] {
    const at::Tensor array = cnnviz::ParseNpy(bytes, "fuzz input");
    if (static_cast<size_t>(array.numel()) * array.element_size() > size) {
      std::fprintf(stderr, "ParseNpy returned more data than the input holds\n");
      std::abort();
    }
  });
  return 0;
}
