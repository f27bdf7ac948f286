// Shared helpers for the libFuzzer harnesses in tests/fuzz/ (see README.md there).
//
// Every harness feeds one parser of outside input and lets only cnnviz's own exceptions
// (cnnviz::Error: UsageError, InputError, ModelError) pass. Anything else -- std::out_of_range from
// std::stoll, std::bad_alloc, c10::Error, a sanitizer report, a crash, a hang -- escapes
// LLVMFuzzerTestOneInput and is reported by libFuzzer (or fails the replay test).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "cnnviz/core/error.h"

namespace cnnviz_fuzz {

// The fuzz input as a string.
inline std::string AsString(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A folder private to this process (/tmp/cnnviz-fuzz-<target>-<pid>), created on first use and removed
// at exit, for harnesses whose parser reads files.
inline const std::filesystem::path& ScratchDir(const char* target) {
  static const std::filesystem::path dir = [target] {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("cnnviz-fuzz-" + std::string(target) + "-" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
    static std::filesystem::path to_remove;
    to_remove = path;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return path;
  }();
  return dir;
}

// Writes `bytes` to `path` (truncating). Aborts when it cannot: that is the harness's fault, not the
// parser's.
inline void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Runs `parse`; cnnviz::Error (the documented reaction to bad input) is swallowed, everything else
// propagates out of LLVMFuzzerTestOneInput and terminates the process with its type and what() printed.
template <typename Fn>
void ExpectOnlyCnnvizErrors(Fn&& parse) {
  try {
    parse();
  } catch (const cnnviz::Error&) {
  }
}

}  // namespace cnnviz_fuzz
