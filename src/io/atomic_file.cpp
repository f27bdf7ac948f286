#include "cnnviz/io/atomic_file.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <regex>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace fs = std::filesystem;

namespace {

// The temporaries being written, for RemoveTemporariesNow: slots hold pointers to strings owned by the
// writers (set before the file is created, cleared after it is renamed or removed).
constexpr int kSlots = 64;
std::atomic<const char*> g_temporaries[kSlots];

class Registered {
 public:
  explicit Registered(const std::string& path) : path_(path) {
    for (int i = 0; i < kSlots; ++i) {
      const char* expected = nullptr;
      if (g_temporaries[i].compare_exchange_strong(expected, path_.c_str())) {
        slot_ = i;
        return;
      }
    }
  }
  ~Registered() {
    if (slot_ >= 0) g_temporaries[slot_].store(nullptr);
  }
  Registered(const Registered&) = delete;
  Registered& operator=(const Registered&) = delete;

 private:
  std::string path_;
  int slot_ = -1;
};

void WriteBytes(const std::string& path, const char* data, size_t size) {
  const fs::path target(path);
  const fs::path temporary =
      target.parent_path() / ("." + target.filename().string() + ".tmp" + std::to_string(::getpid()));
  const Registered registered(temporary.string());
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

void RemoveTemporariesNow() noexcept {
  for (auto& slot : g_temporaries) {
    if (const char* path = slot.load()) ::unlink(path);
  }
}

size_t RemoveStaleTemporaries(const std::string& folder, bool recursive) {
  static const std::regex kTemporary(R"(\..+\.tmp(\d{1,9}))");
  size_t removed = 0;
  auto visit = [&](const fs::directory_entry& entry) {
    std::smatch match;
    std::error_code ec;
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file(ec) || !std::regex_match(name, match, kTemporary)) return;
    const auto pid = static_cast<pid_t>(std::stol(match[1].str()));
    if (pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH)) {
      if (fs::remove(entry.path(), ec)) ++removed;
    }
  };
  std::error_code ec;
  if (recursive) {
    for (fs::recursive_directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) visit(*it);
  } else {
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) visit(*it);
  }
  return removed;
}

void WriteFileAtomic(const std::string& path, const std::string& content) {
  WriteBytes(path, content.data(), content.size());
}

void WriteFileAtomic(const std::string& path, const std::vector<unsigned char>& content) {
  WriteBytes(path, reinterpret_cast<const char*>(content.data()), content.size());
}

}  // namespace cnnviz
