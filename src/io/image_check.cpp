// Checks of an image file's header and end that decoders do not make: a truncated file decodes "fine"
// as half an image (cv::imread and libjpeg only warn), and a label map of the wrong pixel format decodes
// into wrong labels (16-bit: all 0 after cv::imread's scaling; grey: R = G, so label = 257 v).
#include <cstdio>
#include <cstring>
#include <memory>

#include "cnnviz/core/error.h"
#include "decode.h"

namespace cnnviz::io_detail {
namespace {

using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

bool Contains(const unsigned char* data, size_t size, const char* pattern, size_t length) {
  for (size_t i = 0; i + length <= size; ++i) {
    if (std::memcmp(data + i, pattern, length) == 0) return true;
  }
  return false;
}

}  // namespace

void CheckImageFile(const std::string& path, const std::string& what, bool label_map) {
  File file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return;  // the decoder reports it
  unsigned char head[32] = {0};
  const size_t got = std::fread(head, 1, sizeof(head), file.get());
  unsigned char tail[64] = {0};
  size_t tail_size = 0;
  if (std::fseek(file.get(), -static_cast<long>(sizeof(tail)), SEEK_END) != 0) std::fseek(file.get(), 0, SEEK_SET);
  tail_size = std::fread(tail, 1, sizeof(tail), file.get());
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  const std::string name = what + " '" + path + "'";
  if (got >= 8 && std::memcmp(head, kPng, 8) == 0) {
    if (got < 26 || std::memcmp(head + 12, "IHDR", 4) != 0) throw InputError(name + " is a damaged PNG (no IHDR)");
    const int depth = head[24], color = head[25];
    if (!Contains(tail, tail_size, "IEND", 4)) throw InputError(name + " is a truncated PNG (no IEND chunk)");
    if (label_map) {
      if (depth != 8) {
        throw InputError(name + " is a " + std::to_string(depth) +
                         "-bit PNG; Broden label maps are 8-bit RGB (label = R + 256 G)");
      }
      if (color == 0 || color == 4) {
        throw InputError(name + " is a greyscale PNG; Broden label maps are RGB (label = R + 256 G)");
      }
    }
    return;
  }
  if (got >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) {
    if (label_map) throw InputError(name + " is a JPEG; label maps must be PNG (JPEG changes the label values)");
    if (!Contains(tail, tail_size, "\xFF\xD9", 2)) throw InputError(name + " is a truncated JPEG (no end-of-image marker)");
  }
}

}  // namespace cnnviz::io_detail
