// Checksums of a TorchScript archive: LibTorch reads a zip's entries without checking their CRC-32, so a
// model file with flipped bytes loads corrupted weights without a word. Private to src/model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cnnviz::detail {

// Verifies the CRC-32 of every stored (uncompressed) entry of the zip archive at `path`, as the central
// directory records it. Throws InputError naming the first damaged entry. Files that are not zip
// archives, and entries it cannot read (compressed), are left to LibTorch's loader.
void VerifyZipChecksums(const std::string& path);

// CRC-32 (zip's polynomial) of `size` bytes, continuing from `crc` (0 to start).
uint32_t Crc32(const unsigned char* data, size_t size, uint32_t crc = 0);

}  // namespace cnnviz::detail
