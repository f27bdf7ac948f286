// Outputs are written atomically: to a temporary file in the same folder, then renamed over the target,
// so an interrupted run never leaves a half-written report.
#pragma once

#include <string>
#include <vector>

namespace cnnviz {

// Writes `content` to `path` atomically, through `.<name>.tmp<PID>` beside it. Throws InputError when
// the folder is not writable or the disk is full (the temporary is removed).
void WriteFileAtomic(const std::string& path, const std::string& content);
void WriteFileAtomic(const std::string& path, const std::vector<unsigned char>& content);

// For a fatal signal's handler (async-signal-safe): unlinks the temporaries this process is writing.
void RemoveTemporariesNow() noexcept;

// Removes, in `folder` (and its subfolders when `recursive`), the temporaries `.<name>.tmp<PID>` of
// processes that no longer run (a killed earlier run). Returns how many it removed.
size_t RemoveStaleTemporaries(const std::string& folder, bool recursive = true);

}  // namespace cnnviz
