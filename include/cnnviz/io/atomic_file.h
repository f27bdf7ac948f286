// Outputs are written atomically: to a temporary file in the same folder, then renamed over the target,
// so an interrupted run never leaves a half-written report.
#pragma once

#include <string>
#include <vector>

namespace cnnviz {

// Writes `content` to `path` atomically. Throws InputError when the folder is not writable.
void WriteFileAtomic(const std::string& path, const std::string& content);
void WriteFileAtomic(const std::string& path, const std::vector<unsigned char>& content);

}  // namespace cnnviz
