// `cnnviz compare` end to end: the bundled model's training checkpoints gain detectors; a model listed
// twice gives identical columns; zeroing one unit changes only that unit's concept; rotations start at
// plain dissection (alpha 0); a re-run resumes finished models; bad requests get one-line errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "cli_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::ExpectFilesExist;
using test::ReadJson;

std::string Checkpoint(const std::string& step) {
  return std::string(CNNVIZ_SOURCE_DIR) + "/models/checkpoints/ckpt_" + step + ".pt";
}

int64_t Detectors(const json& report, size_t model) {
  int64_t total = 0;
  for (const json& layer : report["layers"]) total += layer["per_model"][model]["detectors"].get<int64_t>();
  return total;
}

TEST(CliCompareTest, CheckpointsGainDetectorsAndResume) {
  const std::string out = test::TempDir("compare_ckpt");
  // Given out of order: --order numeric sorts them by the number in the name.
  const std::string models = Checkpoint("01000") + " " + Checkpoint("00000") + " " + Checkpoint("00500");
  const std::string rest = " --order numeric --dataset " + test::Fixture("concepts") +
                           " --layers conv3,conv4,conv5 --rotations 0,1 --actmax-steps 4 --strip-units 2 --out " + out;
  const std::string command = "compare -q --device cpu --models " + models + rest;
  const test::Result run = test::RunCli(command);
  ASSERT_EQ(run.code, 0) << run.out;
  const json report = ReadJson(out + "/compare.json");
  EXPECT_EQ(report, ReadJson(out + "/report.json"));
  ASSERT_EQ(report["models"].size(), 3u);
  EXPECT_EQ(report["models"][0]["name"], "ckpt_00000");
  EXPECT_EQ(report["models"][2]["name"], "ckpt_01000");
  EXPECT_EQ(report["models"][1]["step"], 500);
  EXPECT_TRUE(report["same_architecture"].get<bool>());
  // Detectors appear over training (measured: 4 at initialization, 68 at step 1000 on conv3-conv5).
  EXPECT_GT(Detectors(report, 2), 4 * std::max<int64_t>(1, Detectors(report, 0)));
  for (const json& layer : report["layers"]) {
    // alpha = 0 is the last model's plain dissection.
    const json& points = layer["rotations"]["points"];
    ASSERT_EQ(points.size(), 2u);
    EXPECT_EQ(points[0]["alpha"], 0.0);
    EXPECT_EQ(points[0]["detectors"], layer["per_model"][2]["detectors"]);
    EXPECT_EQ(points[0]["unique_concepts"], layer["per_model"][2]["unique_concepts"]);
    // Every change is a difference of consecutive concepts.
    for (const json& unit : layer["evolution"]["units"]) {
      size_t changes = 0;
      for (size_t i = 1; i < unit["concept"].size(); ++i) changes += unit["concept"][i] != unit["concept"][i - 1] ? 1 : 0;
      EXPECT_EQ(unit["changes"].size(), changes);
    }
  }
  ExpectFilesExist(report, out);
  EXPECT_TRUE(fs::exists(out + "/index.html"));

  // The same command again: every model and the rotations come from stages/, with the same numbers.
  const test::Result again = test::RunCli(command);
  ASSERT_EQ(again.code, 0) << again.out;
  const json resumed = ReadJson(out + "/compare.json");
  for (const json& model : resumed["models"]) EXPECT_TRUE(model["resumed"].get<bool>()) << model["name"];
  EXPECT_EQ(resumed["layers"], report["layers"]);
  // One more checkpoint: only it is dissected.
  const test::Result more = test::RunCli("compare -q --device cpu --models " + models + " " + Checkpoint("00250") + "," +
                                         Checkpoint("00750") + rest);
  ASSERT_EQ(more.code, 0) << more.out;
  const json added = ReadJson(out + "/compare.json");
  ASSERT_EQ(added["models"].size(), 5u);
  for (const json& model : added["models"]) {
    const bool fresh = model["name"] == "ckpt_00250" || model["name"] == "ckpt_00750";
    EXPECT_EQ(model["resumed"].get<bool>(), !fresh) << model["name"];
  }
  EXPECT_EQ(added["layers"][2]["per_model"][4], report["layers"][2]["per_model"][2]);  // ckpt_01000 unchanged
}

TEST(CliCompareTest, TwinModelsAgreeAndAZeroedUnitAloneChanges) {
  const std::string out = test::TempDir("compare_planted");
  const test::Result run = test::RunCli("compare -q --device cpu --models " + test::Fixture("planted.pt") + "," +
                                        test::Fixture("planted.pt") + "," + test::Fixture("planted_zeroed.pt") +
                                        " --names planted,twin,zeroed --dataset " + test::Fixture("concepts") +
                                        " --layers relu --quantile 0.02 --actmax-steps 0 --out " + out);
  ASSERT_EQ(run.code, 0) << run.out;
  const json report = ReadJson(out + "/compare.json");
  const json& layer = report["layers"][0];
  EXPECT_EQ(layer["per_model"][0]["detectors"], 4);
  EXPECT_EQ(layer["per_model"][2]["detectors"], 3);
  const json& units = layer["evolution"]["units"];
  for (size_t u = 0; u < units.size(); ++u) {
    const json& per_model = units[u]["per_model"];
    EXPECT_EQ(per_model[0]["label"], per_model[1]["label"]) << u;  // twins: identical columns
    EXPECT_EQ(per_model[0]["iou"], per_model[1]["iou"]) << u;
    if (u == 1) {
      EXPECT_EQ(per_model[0]["label"], "green-c");
      EXPECT_FALSE(per_model[2]["detector"].get<bool>());
      ASSERT_EQ(units[u]["changes"].size(), 1u);
      EXPECT_EQ(units[u]["changes"][0]["at"], "zeroed");
      EXPECT_EQ(units[u]["changes"][0]["from"], "green-c");
      EXPECT_TRUE(units[u]["changes"][0]["to"].is_null());
    } else {
      EXPECT_EQ(per_model[2]["iou"], per_model[0]["iou"]) << u;
      EXPECT_TRUE(units[u]["changes"].empty()) << u;
    }
  }
  EXPECT_EQ(layer["evolution"]["changed_units"], 1);
  EXPECT_EQ(layer["evolution"]["strip_units"], json::array({1}));
  EXPECT_TRUE(fs::exists(out + "/" + units[1]["strip"].get<std::string>()));
}

TEST(CliCompareTest, BadRequests) {
  const std::string out = test::TempDir("compare_bad");
  const std::string base = "compare --device cpu --dataset " + test::Fixture("concepts") + " --out " + out + " ";
  const std::string planted = test::Fixture("planted.pt");
  test::ExpectOneLineError(base + "--models " + planted + " --names a,b", 2, "--names gives 2 name(s) for 1 model(s)");
  test::ExpectOneLineError(base + "--models " + planted + "," + planted, 2, "two models are named 'planted'");
  test::ExpectOneLineError(base + "--models " + planted + " --order numeric", 2, "has no number");
  test::ExpectOneLineError(base + "--models " + planted + " --rotations 0,2", 2, "--rotations takes amounts in [0, 1]");
  test::ExpectOneLineError(base + "--models " + planted + "," + Checkpoint("00000") + " --layers relu", 2, "model 'ckpt_00000'");
  test::ExpectOneLineError(base + "--models " + planted + "," + test::Fixture("linear_net.pt") + " --layers relu", 2, "linear_net");
  EXPECT_FALSE(fs::exists(out + "/report.json"));
}

}  // namespace
}  // namespace cnnviz
