// The cnnviz executable: output formats, one-line errors and exit codes (README.md, "Exit codes").
#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cnnviz/layers_command.h"
#include "test_util.h"

namespace cnnviz {
namespace {

struct Result {
  int code;
  std::string out;
};

// Runs the cnnviz binary with `arguments`; stderr is merged into the captured text when `merge`.
Result RunCli(const std::string& arguments, bool merge = true) {
  const std::string command = std::string(CNNVIZ_BINARY) + " " + arguments + (merge ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

TEST(CliTest, LayersJsonIsStableAndComplete) {
  app::LayersOptions options;
  options.model.path = test::Fixture("tinycnn_script.pt");
  options.json = true;
  app::GlobalOptions global;
  global.device = "cpu";
  std::ostringstream out;
  app::RunLayers(options, global, out);
  const auto doc = nlohmann::json::parse(out.str());
  ASSERT_TRUE(doc["layers"].is_array());
  bool found_conv5 = false;
  for (const auto& layer : doc["layers"]) {
    for (const char* key : {"name", "alias", "type", "shape", "units", "receptive_field", "tappable", "note"}) {
      EXPECT_TRUE(layer.contains(key)) << key;
    }
    if (layer["name"] == "conv5") {
      found_conv5 = true;
      EXPECT_GT(layer["units"].get<int>(), 0);
      EXPECT_EQ(layer["shape"].size(), 4u);
    }
  }
  EXPECT_TRUE(found_conv5);
  // Same input, same bytes.
  std::ostringstream again;
  app::RunLayers(options, global, again);
  EXPECT_EQ(out.str(), again.str());
}

TEST(CliTest, TableAndJsonFromTheBinary) {
  Result table = RunCli("layers --model " + test::Fixture("tinycnn_script.pt") + " --device cpu");
  EXPECT_EQ(table.code, 0) << table.out;
  EXPECT_NE(table.out.find("conv5"), std::string::npos);
  Result json = RunCli("layers --json -q --model " + test::Fixture("tinycnn_script.pt") + " --device cpu", false);
  EXPECT_EQ(json.code, 0);
  EXPECT_NO_THROW(nlohmann::json::parse(json.out));
}

void ExpectOneLineError(const std::string& arguments, int code, const std::string& fragment) {
  Result result = RunCli(arguments);
  EXPECT_EQ(result.code, code) << arguments << "\n" << result.out;
  EXPECT_NE(result.out.find("cnnviz: error: "), std::string::npos) << result.out;
  EXPECT_NE(result.out.find(fragment), std::string::npos) << result.out;
  std::string last_line = result.out.substr(result.out.rfind("cnnviz: error: "));
  EXPECT_EQ(std::count(last_line.begin(), last_line.end(), '\n'), 1) << result.out;
}

TEST(CliTest, ErrorsAreOneLineWithDocumentedExitCodes) {
  ExpectOneLineError("layers --model " + test::Fixture("no_such.pt"), 3, "does not exist");
  ExpectOneLineError("layers --model " + test::Fixture("garbage.pt"), 3, "not a TorchScript file");
  ExpectOneLineError("layers --model " + test::Fixture("future_op.pt"), 4, "aten::cnnviz_future_op");
  ExpectOneLineError("layers --model " + test::Fixture("bad_sidecar.pt"), 3, "not valid JSON");
  ExpectOneLineError("layers --model " + test::Fixture("alexnet_script.pt") + " --input-size 16", 4, "too small");
  ExpectOneLineError("layers", 2, "--model");
  ExpectOneLineError("frobnicate", 2, "frobnicate");
  ExpectOneLineError("layers --model x.pt --device tpu", 2, "--device");
}

TEST(CliTest, HelpAndVersion) {
  Result help = RunCli("layers --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Examples"), std::string::npos);
  Result version = RunCli("--version");
  EXPECT_EQ(version.code, 0);
  EXPECT_NE(version.out.find("LibTorch"), std::string::npos);
}

}  // namespace
}  // namespace cnnviz
