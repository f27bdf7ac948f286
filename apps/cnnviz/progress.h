// Progress of a long run on stderr: what the user asked for (units, images, layers), how much of it is
// done, and an estimate of the time left. One line at most every few seconds, and one at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace cnnviz::app {

class ProgressReporter {
 public:
  // `task` starts every line ("actmax conv3", "dissect pass 1/2"); `noun` is what is counted ("units").
  ProgressReporter(std::string task, std::string noun, std::chrono::milliseconds every = std::chrono::seconds(3));
  // `done` of `total` finished; `fraction` (0–1) of the whole work, which can run ahead of `done` (a
  // batch of units half optimized); below 0 = done/total. `detail` is appended ("batch 2/4").
  void Update(int64_t done, int64_t total, double fraction = -1, const std::string& detail = "");
  // Starts a new phase with its own counts and clock (dissection's second pass).
  void Restart(std::string task);

 private:
  std::string task_, noun_;
  std::chrono::milliseconds every_;
  std::chrono::steady_clock::time_point start_, last_;
  bool finished_ = false;
};

// "45 s", "3 min 05 s", "2 h 04 min".
std::string FormatDuration(double seconds);

}  // namespace cnnviz::app
