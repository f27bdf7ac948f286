// `cnnviz adversarial` end to end on the bundled model and the generated concept set: the report holds
// what docs/adversarial.md promises and every file it names exists; a targeted attack reaches its
// target on a stated share of the images; a given adversarial image is analysed as the attack's own;
// --dissection labels the units that changed; bad requests get one-line errors and leave no report.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cli_util.h"
#include "test_util.h"

namespace cnnviz {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::ExpectFilesExist;
using test::ReadJson;

std::string Model() { return std::string(CNNVIZ_SOURCE_DIR) + "/models/tinycnn.pt"; }
std::string Concepts() { return test::Fixture("concepts"); }
std::string FirstImage() {
  std::set<std::string> images;
  for (const auto& entry : fs::recursive_directory_iterator(Concepts() + "/images")) {
    if (entry.path().extension() == ".png" || entry.path().extension() == ".jpg") images.insert(entry.path().string());
  }
  return images.empty() ? std::string() : *images.begin();
}

TEST(CliAdversarialTest, OneImagePgdReportFilesAndPages) {
  const std::string out = test::TempDir("adv_image");
  const test::Result run = test::RunCli("adversarial -q --device cpu --model " + Model() + " --image " + FirstImage() +
                                        " --inversion-steps 20 --changed-units 4 --out " + out);
  ASSERT_EQ(run.code, 0) << run.out;
  const json report = ReadJson(out + "/report.json");
  EXPECT_EQ(report["command"], "adversarial");
  EXPECT_EQ(report["mode"], "image");
  EXPECT_EQ(report["attack"]["attack"], "pgd");
  EXPECT_NEAR(report["attack"]["epsilon"].get<double>(), 8.0 / 255.0, 1e-12);
  ASSERT_EQ(report["images"].size(), 1u);
  const json& image = report["images"][0];
  EXPECT_LE(image["linf"].get<double>(), 8.0 / 255.0 + 1e-6);  // inside the budget
  EXPECT_GT(image["linf"].get<double>(), 0.0);
  EXPECT_EQ(image["clean_top5"].size(), 5u);
  EXPECT_TRUE(image["clean_top5"][0]["name"].is_string());  // the sidecar's class names
  EXPECT_EQ(image["success"].get<bool>(), image["clean_class"] != image["adversarial_class"]);
  // One divergence per aliased layer (conv1-conv5), growing from the input's own change to the top.
  ASSERT_EQ(report["layers"].size(), 5u);
  ASSERT_EQ(image["relative_l2"].size(), 5u);
  for (const json& layer : report["layers"]) {
    EXPECT_GT(layer["relative_l2"]["mean"].get<double>(), 0.0) << layer["name"];
    EXPECT_LE(layer["cosine"]["mean"].get<double>(), 1.0 + 1e-9);
  }
  EXPECT_GT(report["layers"][4]["relative_l2"]["mean"].get<double>(), image["input_relative_l2"].get<double>());
  // The changes of the middle and the deepest layer, 4 units each way, disjoint, sorted.
  ASSERT_EQ(report["changes"].size(), 2u);
  for (const json& layer : report["changes"]) {
    ASSERT_EQ(layer["rose"].size(), 4u);
    ASSERT_EQ(layer["fell"].size(), 4u);
    EXPECT_GE(layer["rose"][0]["change"].get<double>(), layer["rose"][3]["change"].get<double>());
    EXPECT_LE(layer["fell"][0]["change"].get<double>(), layer["fell"][3]["change"].get<double>());
    EXPECT_GE(layer["rose"][3]["change"].get<double>(), layer["fell"][3]["change"].get<double>());
    for (const json& unit : layer["rose"]) {
      EXPECT_NEAR(unit["change"].get<double>(), unit["adversarial"].get<double>() - unit["clean"].get<double>(), 1e-9);
      EXPECT_TRUE(unit["label"].is_null());  // no --dissection
    }
  }
  ASSERT_TRUE(report["inversions"].is_object());
  EXPECT_EQ(report["inversions"]["layers"].size(), 3u);
  ExpectFilesExist(report, out);
  for (const char* file : {"index.html", "viewer.js", "viewer.css", "data.js", "divergence.png", "inversions.png"}) {
    EXPECT_TRUE(fs::exists(out + "/" + file)) << file;
  }
  // data.js is the report.
  std::ifstream data(out + "/data.js");
  std::stringstream text;
  text << data.rdbuf();
  const std::string prefix = "window.CNNVIZ_DATA = ";
  ASSERT_EQ(text.str().rfind(prefix, 0), 0u);
  std::string body = text.str().substr(prefix.size());
  body = body.substr(0, body.find_last_of(';'));
  EXPECT_EQ(json::parse(body), report);

  // The same pair given as --adversarial-image (another tool's attack): analysed, not attacked. PNGs
  // hold 8-bit pixels, so the perturbation read back is within half a step of the attack's.
  const std::string given = test::TempDir("adv_given");
  const test::Result analysed = test::RunCli("adversarial -q --device cpu --model " + Model() + " --image " + out +
                                             "/images/0000_clean.png --adversarial-image " + out +
                                             "/images/0000_adversarial.png --inversion-layers none --out " + given);
  ASSERT_EQ(analysed.code, 0) << analysed.out;
  const json again = ReadJson(given + "/report.json");
  EXPECT_EQ(again["attack"]["source"], "given");
  EXPECT_TRUE(again["attack"]["attack"].is_null());
  EXPECT_NEAR(again["images"][0]["linf"].get<double>(), image["linf"].get<double>(), 1.0 / 255.0);
  EXPECT_EQ(again["images"][0]["adversarial_class"], image["adversarial_class"]);
  EXPECT_NEAR(again["layers"][4]["relative_l2"]["mean"].get<double>(), report["layers"][4]["relative_l2"]["mean"].get<double>(),
              0.1 * report["layers"][4]["relative_l2"]["mean"].get<double>());
}

// The stated share: a targeted PGD (L-inf, 8/255, 10 steps) moves at least 90% of the 60 concept
// images to class 5 (measured: 58 of 60), and the folder summary is consistent with its images.
TEST(CliAdversarialTest, FolderModeTargetedShareAndDissectionLabels) {
  const std::string dissect = test::TempDir("adv_dissect");
  const test::Result dissected = test::RunCli("dissect -q --device cpu --model " + Model() + " --dataset " + Concepts() +
                                              " --layers conv5 --out " + dissect);
  ASSERT_EQ(dissected.code, 0) << dissected.out;
  const std::string out = test::TempDir("adv_folder");
  const test::Result run = test::RunCli("adversarial -q --device cpu --model " + Model() + " --images " + Concepts() +
                                        " --target 5 --inspect conv5 --changed-units 5 --inversion-layers none --dissection " +
                                        dissect + " --out " + out);
  ASSERT_EQ(run.code, 0) << run.out;
  const json report = ReadJson(out + "/report.json");
  EXPECT_EQ(report["mode"], "folder");
  EXPECT_EQ(report["attack"]["target"]["class"], 5);
  const json& summary = report["summary"];
  ASSERT_EQ(summary["images"], 60);
  ASSERT_EQ(report["images"].size(), 60u);
  int64_t reached = 0;
  for (const json& image : report["images"]) {
    reached += image["adversarial_class"] == 5 ? 1 : 0;
    EXPECT_EQ(image["success"].get<bool>(), image["adversarial_class"] == 5);
    EXPECT_LE(image["linf"].get<double>(), 8.0 / 255.0 + 1e-6);
  }
  EXPECT_EQ(summary["success"], reached);
  EXPECT_GE(summary["success_rate"].get<double>(), 0.9);
  for (const json& layer : report["layers"]) {
    EXPECT_GT(layer["relative_l2"]["std"].get<double>(), 0.0);
    EXPECT_LE(layer["relative_l2"]["min"].get<double>(), layer["relative_l2"]["mean"].get<double>());
  }
  // Every listed unit carries the dissection's label of that unit.
  const json dissection = ReadJson(dissect + "/report.json");
  std::map<int64_t, json> labels;
  for (const json& unit : dissection["layers"][0]["units"]) labels[unit["unit"].get<int64_t>()] = unit;
  ASSERT_EQ(report["changes"].size(), 1u);
  for (const char* side : {"rose", "fell"}) {
    ASSERT_EQ(report["changes"][0][side].size(), 5u);
    for (const json& unit : report["changes"][0][side]) {
      const json& expected = labels.at(unit["unit"].get<int64_t>());
      EXPECT_EQ(unit["label"], expected["label"]);
      EXPECT_EQ(unit["iou"], expected["iou"]);
      EXPECT_EQ(unit["detector"], expected["detector"]);
    }
  }
  EXPECT_EQ(report["dissection"]["layers"], json::array({"conv5"}));
  ExpectFilesExist(report, out);
}

TEST(CliAdversarialTest, BadRequests) {
  const std::string out = test::TempDir("adv_bad");
  const std::string base = "adversarial --device cpu --model " + Model() + " --out " + out + " ";
  const std::string image = " --image " + FirstImage();
  test::ExpectOneLineError(base + image + " --epsilon 0", 2, "--epsilon must be positive");
  test::ExpectOneLineError(base + image + " --epsilon 8/0", 2, "divides by zero");
  test::ExpectOneLineError(base + image + " --epsilon eight", 2, "8/255");
  test::ExpectOneLineError(base + image + " --target 12", 2, "out of range (the model has 12 classes");
  test::ExpectOneLineError(base + image + " --images " + Concepts(), 2, "exactly one of --image");
  test::ExpectOneLineError(base + " --adversarial-image " + FirstImage() + " --images " + Concepts(), 2,
                           "--adversarial-image needs --image");
  test::ExpectOneLineError(base + image + " --inspect nosuchlayer", 2, "nosuchlayer");
  test::ExpectOneLineError(base + image + " --dissection " + out + "_none", 3, "no report.json");
  test::ExpectOneLineError("adversarial --device cpu --model " + test::Fixture("planted.pt") + image + " --out " + out, 2,
                           "no class output");
  EXPECT_FALSE(fs::exists(out + "/report.json"));
}

}  // namespace
}  // namespace cnnviz
