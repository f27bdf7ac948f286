#include "cnnviz/io/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace fs = std::filesystem;

namespace {

void WriteBytes(const std::string& path, const char* data, size_t size) {
  const fs::path target(path);
  const fs::path temporary =
      target.parent_path() / ("." + target.filename().string() + ".tmp" + std::to_string(::getpid()));
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("cannot write '" + temporary.string() + "': folder missing or not writable");
    out.write(data, static_cast<std::streamsize>(size));
    out.flush();
    if (!out) {
      std::error_code ignored;
      fs::remove(temporary, ignored);
      throw InputError("cannot write '" + path + "' (disk full?)");
    }
  }
  std::error_code ec;
  fs::rename(temporary, target, ec);
  if (ec) {
    fs::remove(temporary, ec);
    throw InputError("cannot move the finished file into place at '" + path + "'");
  }
}

}  // namespace

void WriteFileAtomic(const std::string& path, const std::string& content) {
  WriteBytes(path, content.data(), content.size());
}

void WriteFileAtomic(const std::string& path, const std::vector<unsigned char>& content) {
  WriteBytes(path, reinterpret_cast<const char*>(content.data()), content.size());
}

}  // namespace cnnviz
