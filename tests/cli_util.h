// Running the cnnviz binary from tests (builds with the CLI: CNNVIZ_BINARY is defined).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace cnnviz::test {

struct Result {
  int code;         // exit status, or 128 + signal
  std::string out;  // stdout (and stderr when merged)
};

// Runs the cnnviz binary with `arguments` (through the shell); stderr is merged into the captured text
// when `merge`. `prefix` runs before it in the same shell (e.g. "ulimit -f 64;").
inline Result RunCli(const std::string& arguments, bool merge = true, const std::string& prefix = "") {
  const std::string command = prefix + " exec " + std::string(CNNVIZ_BINARY) + " " + arguments +
                              (merge ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status), out};
}

// The run fails with exit code `code` and one line "cnnviz: error: ..." containing `fragment`.
inline void ExpectOneLineError(const std::string& arguments, int code, const std::string& fragment,
                               const std::string& prefix = "") {
  Result result = RunCli(arguments, true, prefix);
  EXPECT_EQ(result.code, code) << arguments << "\n" << result.out;
  const size_t at = result.out.rfind("cnnviz: error: ");
  ASSERT_NE(at, std::string::npos) << result.out;
  EXPECT_NE(result.out.find(fragment), std::string::npos) << arguments << "\n" << result.out;
  const std::string last_line = result.out.substr(at);
  EXPECT_EQ(std::count(last_line.begin(), last_line.end(), '\n'), 1) << result.out;
}

// A fresh path under the test temp folder, unique to this process (not created).
inline std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "cnnviz_" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  return dir;
}

// A report (or any JSON file) the run wrote; a missing file fails the test.
inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

// Every ".png" string anywhere in `node` names a file that exists: relative names under `folder` (or
// as given, for input images the report names), absolute ones as they are.
inline void ExpectFilesExist(const nlohmann::json& node, const std::string& folder) {
  namespace fs = std::filesystem;
  if (node.is_string()) {
    const std::string text = node.get<std::string>();
    if (text.size() <= 4 || text.substr(text.size() - 4) != ".png") return;
    const bool found = text.front() == '/' ? fs::exists(text) : fs::exists(folder + "/" + text) || fs::exists(text);
    if (!found) ADD_FAILURE() << "missing " << text;
  } else if (node.is_structured()) {
    for (const auto& item : node) ExpectFilesExist(item, folder);
  }
}

}  // namespace cnnviz::test
