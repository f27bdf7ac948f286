#include "cnnviz/progress.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "cnnviz/core/logging.h"

namespace cnnviz::app {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char text[48];
  if (s < 60) {
    std::snprintf(text, sizeof(text), "%lld s", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(text, sizeof(text), "%lld min %02lld s", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(text, sizeof(text), "%lld h %02lld min", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  }
  return text;
}

ProgressReporter::ProgressReporter(std::string task, std::string noun, std::chrono::milliseconds every)
    : task_(std::move(task)), noun_(std::move(noun)), every_(every), start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void ProgressReporter::Restart(std::string task) {
  task_ = std::move(task);
  start_ = last_ = std::chrono::steady_clock::now();
  finished_ = false;
}

void ProgressReporter::Update(int64_t done, int64_t total, double fraction, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  const bool end = total > 0 && done >= total;
  if (finished_ || (!end && now - last_ < every_)) return;
  last_ = now;
  finished_ = end;
  if (fraction < 0) fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  std::string line = task_ + ": " + std::to_string(done) + "/" + std::to_string(total) + " " + noun_;
  char percent[16];
  std::snprintf(percent, sizeof(percent), " (%.0f%%)", 100.0 * fraction);
  line += percent;
  if (!detail.empty()) line += ", " + detail;
  if (end) {
    line += ", took " + FormatDuration(elapsed);
  } else if (fraction > 0) {
    line += ", ETA " + FormatDuration(elapsed * (1 - fraction) / fraction);
  }
  Log()->info("{}", line);
}

}  // namespace cnnviz::app
