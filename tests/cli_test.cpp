// The cnnviz executable: output formats, one-line errors and exit codes (README.md, "Exit codes").
#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/layers_command.h"
#include "cnnviz/progress.h"
#include "cli_util.h"
#include "json_schema.h"
#include "test_util.h"

namespace cnnviz {
namespace {
using test::ExpectOneLineError;
using test::Result;
using test::RunCli;
using test::TempDir;

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

namespace cnnviz {
namespace {


TEST(CliActMaxTest, WritesGridUnitsArraysAndReport) {
  const std::string out = TempDir("actmax");
  const std::string images = TempDir("natural");
  std::filesystem::create_directories(images + "/sub");
  for (int i = 0; i < 3; ++i) WritePng(images + "/sub/" + std::to_string(i) + ".png", at::rand({3, 40, 40}));
  Result result = RunCli("actmax -q --device cpu --model " + test::Fixture("tinycnn_script.pt") +
                         " --layer conv2 --units 0-3 --steps 4 --size 32 --batch 2 --save-arrays --out " + out +
                         " --reference-dataset " + images);
  ASSERT_EQ(result.code, 0) << result.out;
  for (const char* file : {"grid.png", "report.json", "units/conv2_0.png", "units/conv2_3.png", "arrays/conv2_3.npy"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
  }
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["command"], "actmax");
  EXPECT_EQ(report["options"]["method"]["render"]["steps"], 4);
  EXPECT_EQ(report["options"]["method"]["param"]["kind"], "fft");
  // On a CPU the workers default to every usable core, and conv2 (conv + ReLU) computes each image's
  // own channel alone unless --whole-layer.
  EXPECT_GE(report["options"]["method"]["workers"].get<int>(), 1);
  EXPECT_EQ(report["options"]["method"]["select_channels"], true);
  EXPECT_EQ(report["selected_channels"], true);
  ASSERT_EQ(report["units"].size(), 4u);
  const auto& unit = report["units"][3];
  EXPECT_EQ(unit["unit"], 3);
  EXPECT_EQ(unit["image"], "units/conv2_3.png");
  EXPECT_TRUE(unit.contains("reference_top"));
  EXPECT_TRUE(unit["curve"].is_array());
  // .npy: a 128-byte header ("<f4", shape (3, 32, 32)) then 3*32*32 floats.
  EXPECT_EQ(std::filesystem::file_size(out + "/arrays/conv2_3.npy"), 128u + 3 * 32 * 32 * 4);
  std::ifstream npy(out + "/arrays/conv2_3.npy", std::ios::binary);
  std::string header(128, '\0');
  npy.read(header.data(), 128);
  EXPECT_EQ(header.substr(1, 5), "NUMPY");
  EXPECT_NE(header.find("'shape': (3, 32, 32)"), std::string::npos) << header;
}

TEST(CliActMaxTest, WholeLayerComputesEveryChannel) {
  const std::string out = TempDir("actmax_whole");
  Result result = RunCli("actmax -q --device cpu --threads 1 --model " + test::Fixture("tinycnn_script.pt") +
                         " --layer conv2 --units 0-1 --steps 2 --size 32 --whole-layer --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["options"]["method"]["select_channels"], false);
  EXPECT_EQ(report["selected_channels"], false);
  EXPECT_EQ(report["options"]["method"]["workers"], 0);  // --threads 1 given: automatic, which is --threads
  EXPECT_EQ(report["timings"]["workers"], 1);
}

TEST(CliActMaxTest, BadRequestsFailBeforeWritingAnything) {
  const std::string out = TempDir("actmax_bad");
  const std::string model = " --device cpu --model " + test::Fixture("tinycnn_script.pt");
  ExpectOneLineError("actmax" + model + " --layer conv5 --unit 500 --out " + out, 2, "out of range");
  ExpectOneLineError("actmax" + model + " --layer conv55 --unit 1 --out " + out, 2, "did you mean");
  ExpectOneLineError("actmax" + model + " --expr 'conv5:1 + * 2' --out " + out, 2, "objective");
  ExpectOneLineError("actmax" + model + " --layer conv5 --units 9-3 --out " + out, 2, "backwards");
  ExpectOneLineError("actmax --device cpu --model nowhere.pt --layer conv5 --out " + out, 3, "does not exist");
  EXPECT_FALSE(std::filesystem::exists(out + "/report.json"));
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

TEST(CliDeconvTest, WritesFiguresGridAndReport) {
  const std::string out = TempDir("deconv");
  Result result = RunCli("deconv -q --device cpu --model " + test::Fixture("tinycnn_script.pt") +
                         " --layers conv3,conv5 --units 0-2 --top 4 --dataset " + test::Fixture("mixed_images") +
                         " --save-arrays --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  for (const char* file : {"grid.png", "report.json", "units/conv3_0.png", "units/conv5_2.png", "arrays/conv5_2_0.npy"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
  }
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["command"], "deconv");
  EXPECT_EQ(report["options"]["method"]["rule"], "deconvnet");
  EXPECT_EQ(report["images_scanned"], 3);
  EXPECT_EQ(report["images_skipped"], 1);
  ASSERT_EQ(report["units"].size(), 6u);
  const auto& top = report["units"][0]["top"];
  ASSERT_EQ(top.size(), 3u);  // only three decodable images
  EXPECT_EQ(top[0]["box"].size(), 4u);
  EXPECT_GE(top[0]["activation"].get<double>(), top[1]["activation"].get<double>());
}

TEST(ProgressTest, DurationsReadAsAPersonWouldSayThem) {
  EXPECT_EQ(app::FormatDuration(0.4), "0 s");
  EXPECT_EQ(app::FormatDuration(59.4), "59 s");
  EXPECT_EQ(app::FormatDuration(65), "1 min 05 s");
  EXPECT_EQ(app::FormatDuration(7260), "2 h 01 min");
  EXPECT_EQ(app::FormatDuration(-1), "?");
}

// Every command files and heads a layer by its sidecar alias, whichever name was typed (AlexNet's
// features.6 is conv3), and progress lines count what was asked for with the time left.
TEST(CliTest, LayersAreNamedByAliasEverywhereAndProgressCounts) {
  const std::string model = test::Fixture("alexnet_trace.pt");
  const std::string deconv = TempDir("alias_deconv"), actmax = TempDir("alias_actmax"), dissect = TempDir("alias_dissect");
  Result result = RunCli("deconv --device cpu --model " + model + " --layers features.6,conv5 --units 1 --top 2 --dataset " +
                         test::Fixture("concepts") + " --max-images 8 --out " + deconv);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_TRUE(std::filesystem::exists(deconv + "/units/conv3_1.png")) << result.out;
  EXPECT_TRUE(std::filesystem::exists(deconv + "/units/conv5_1.png"));
  EXPECT_FALSE(std::filesystem::exists(deconv + "/units/features.6_1.png"));
  EXPECT_NE(result.out.find("deconv scan: 8/8 images (100%)"), std::string::npos) << result.out;
  result = RunCli("actmax --device cpu --model " + model + " --layer features.6 --units 0-3 --steps 4 --out " + actmax);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_TRUE(std::filesystem::exists(actmax + "/units/conv3_2.png")) << result.out;
  EXPECT_NE(result.out.find("actmax features.6: 4/4 units (100%), took"), std::string::npos) << result.out;
  result = RunCli("dissect --device cpu --model " + model + " --layers features.10 --dataset " + test::Fixture("concepts") +
                  " --out " + dissect);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_TRUE(std::filesystem::exists(dissect + "/conv5/tally.csv")) << result.out;
  EXPECT_NE(result.out.find("dissect pass 2/2 (tally): "), std::string::npos) << result.out;
  std::filesystem::remove_all(deconv);
  std::filesystem::remove_all(actmax);
  std::filesystem::remove_all(dissect);
}

TEST(CliDeconvTest, OneImageModeAndErrors) {
  const std::string out = TempDir("deconv_image");
  Result result = RunCli("deconv -q --device cpu --model " + test::Fixture("tinycnn_script.pt") +
                         " --layer conv4 --top 4 --rule guided --image " + test::Fixture("mixed_images/0.png") +
                         " --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  std::ifstream in(out + "/report.json");
  EXPECT_EQ(nlohmann::json::parse(in)["units"].size(), 4u);
  const std::string model = " --device cpu --model " + test::Fixture("tinycnn_script.pt");
  ExpectOneLineError("deconv" + model + " --layer conv4 --dataset " + test::Fixture("empty_images"), 3, "no .jpg");
  ExpectOneLineError("deconv" + model + " --layer conv4 --image " + test::Fixture("mixed_images/0.png") +
                         " --units 4096", 2, "out of range");
  ExpectOneLineError("deconv" + model + " --layer conv4 --image " + test::Fixture("mixed_images/0.png") +
                         " --seed-from position --position 1", 2, "--position");
  ExpectOneLineError("deconv" + model + " --layer conv4", 2, "--dataset");
  ExpectOneLineError("deconv" + model + " --layer conv4 --image " + test::Fixture("mixed_images/broken.jpg"), 3,
                     "cannot be decoded");
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

TEST(CliDissectTest, WritesTallyReportHtmlAndArrays) {
  const std::string out = TempDir("dissect");
  Result result = RunCli("dissect -q --device cpu --model " + test::Fixture("planted.pt") + " --dataset " +
                         test::Fixture("broden_missing_mask") + " --layers relu --quantile 0.02 --save-arrays --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  for (const char* file : {"report.json", "index.html", "relu/tally.csv", "relu/detectors.png", "relu/units/unit_0.png",
                           "relu/intersection.npy", "relu/thresholds.npy", "relu/iou.npy"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
  }
  std::ifstream tally(out + "/relu/tally.csv");
  std::string header;
  std::getline(tally, header);
  EXPECT_EQ(header.rfind("unit,channel,category,label,score,texture-label,texture-truth,texture-activation,"
                         "texture-intersect,texture-iou", 0), 0u)
      << header;
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["images"], 59);
  EXPECT_EQ(report["images_skipped"], 1);
  const auto& layer = report["layers"][0];
  EXPECT_EQ(layer["name"], "relu");
  EXPECT_EQ(layer["categories"]["color"]["detectors"], 4);
  EXPECT_EQ(layer["units"][0]["category"], "color");
  EXPECT_TRUE(report["method"].contains("threshold"));
  // The page is the viewer reading the report: data.js holds the report itself.
  std::ifstream data_js(out + "/data.js");
  const std::string script((std::istreambuf_iterator<char>(data_js)), std::istreambuf_iterator<char>());
  const std::string prefix = "window.CNNVIZ_DATA = ";
  ASSERT_EQ(script.rfind(prefix, 0), 0u);
  EXPECT_EQ(nlohmann::json::parse(script.substr(prefix.size(), script.rfind(';') - prefix.size())), report);
  for (const char* file : {"viewer.js", "viewer.css"}) EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
}

// Reads a CSV with a header into rows of (column -> cell); cells hold no commas or quotes here.
std::vector<std::map<std::string, std::string>> ReadCsv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> header;
  std::vector<std::map<std::string, std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> cells;
    std::stringstream stream(line);
    for (std::string cell; std::getline(stream, cell, ',');) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.emplace_back();
    if (header.empty()) {
      header = cells;
      continue;
    }
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size() && i < cells.size(); ++i) row[header[i]] = cells[i];
    rows.push_back(row);
  }
  return rows;
}

// With NetDissect-Lite's thresholds, on the same data and model, tally.csv equals NetDissect-Lite's
// (tests/fixtures/ndl_reference.py, a port of its tally): every unit's label and category, every count,
// every IoU to 1e-4; rows in the same order; plus the 0-based channel column.
TEST(CliDissectTest, TallyEqualsNetDissectLiteWithItsThresholds) {
  const std::string out = TempDir("dissect_ndl");
  Result result = RunCli("dissect -q --device cpu --model " + std::string(CNNVIZ_SOURCE_DIR) + "/models/tinycnn.pt" +
                         " --dataset " + test::Fixture("concepts") + " --layers conv3 --thresholds " +
                         test::Fixture("ndl_conv3_thresholds.npy") + " --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  const auto ours = ReadCsv(out + "/conv3/tally.csv");
  const auto theirs = ReadCsv(test::Fixture("ndl_conv3_tally.csv"));
  ASSERT_EQ(ours.size(), theirs.size());
  ASSERT_EQ(ours.size(), 64u);
  int labelled = 0;
  for (size_t r = 0; r < ours.size(); ++r) {
    EXPECT_EQ(std::stoi(ours[r].at("channel")) + 1, std::stoi(ours[r].at("unit")));
    for (const auto& [column, value] : theirs[r]) {
      ASSERT_TRUE(ours[r].count(column)) << column;
      const std::string& mine = ours[r].at(column);
      const bool number = column == "score" || column.find("-iou") != std::string::npos ||
                          column.find("-truth") != std::string::npos ||
                          column.find("-activation") != std::string::npos ||
                          column.find("-intersect") != std::string::npos;
      if (number) {
        EXPECT_NEAR(std::stod(mine), std::stod(value), 1e-4) << "row " << r << " " << column;
        if (column.find("-iou") == std::string::npos && column != "score") {
          EXPECT_EQ(mine, value) << column;  // counts: exactly, written as NetDissect-Lite writes them
        }
      } else {
        EXPECT_EQ(mine, value) << "row " << r << " " << column;
      }
    }
    labelled += !ours[r].at("label").empty();
  }
  EXPECT_GT(labelled, 32);  // the comparison is not between empty tallies
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["layers"][0]["units"][0]["tally_unit"], report["layers"][0]["units"][0]["unit"].get<int>() + 1);
  EXPECT_NE(report["method"]["threshold"].get<std::string>().find("given"), std::string::npos);
}

// The minimal case through the binary: NetDissect-Lite's float formatting and the flag that restores the
// earlier activated-area rule.
TEST(CliDissectTest, MinimalCaseCsvAndActivatedAreaFlag) {
  for (const std::string rule : {"covered", "present"}) {
    const std::string out = TempDir("dissect_minimal_" + rule);
    Result result = RunCli("dissect -q --device cpu --model " + test::Fixture("red_green.pt") + " --dataset " +
                           test::Fixture("ndl_minimal") + " --layers conv --quantile 0.03 --activated-area " + rule +
                           " --out " + out);
    ASSERT_EQ(result.code, 0) << result.out;
    const auto rows = ReadCsv(out + "/conv/tally.csv");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].at("channel"), "0");  // equal scores (15/16): channel order
    EXPECT_EQ(rows[0].at("unit"), "1");
    EXPECT_EQ(rows[0].at("label"), "red-c");
    EXPECT_EQ(rows[0].at("score"), "0.9375");
    EXPECT_EQ(rows[0].at("object-label"), "circle");
    EXPECT_EQ(rows[0].at("object-truth"), "20.0");
    EXPECT_EQ(rows[0].at("object-intersect"), "4.0");
    EXPECT_EQ(rows[0].at("object-activation"), rule == "covered" ? "8.0" : "15.0");
    EXPECT_EQ(rows[0].at("object-iou"), rule == "covered" ? "0.16666666666666666" : "0.12903225806451613");
    EXPECT_EQ(rows[1].at("label"), "green-c");  // ties with blob (object): the later category
  }
}

// .npy inputs are used as given: a class target on the reference input equals the Python reference.
// A rule that covers no activation in front of the layer is refused (it would silently be the plain
// gradient); otherwise report.json says what it covered.
TEST(CliDeconvTest, RuleCoverageIsReportedAndNoCoverageRefused) {
  const std::string out = TempDir("deconv_coverage");
  ExpectOneLineError("deconv --device cpu --model " + test::Fixture("tanh_net.pt") + " --layer body.2 --dataset " +
                         test::Fixture("mixed_images") + " --out " + out,
                     2, "changes nothing in front of 'body.2'");
  EXPECT_FALSE(std::filesystem::exists(out + "/report.json"));
  Result result = RunCli("deconv --device cpu --model " + test::Fixture("tanh_net.pt") +
                         " --layer body.2 --rule gradient --units 0 --top 1 --dataset " + test::Fixture("mixed_images") +
                         " --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  result = RunCli("deconv --device cpu --model " + test::Fixture("activations_net.pt") +
                  " --layer body.20 --rule guided --units 0 --top 1 --dataset " + test::Fixture("mixed_images") +
                  " --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_NE(result.out.find("covers elu x3, gelu x1"), std::string::npos) << result.out;
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report["rule_coverage"]["body.20"]["covered"]["mish"], 1);
  EXPECT_TRUE(report["rule_coverage"]["body.20"]["plain_gradient"].empty());
  std::filesystem::remove_all(out);
}

// Layers whose channels lie on axis 3 are refused by every unit method, never scored as image rows.
TEST(CliTest, ChannelsLastLayersAreRefusedByUnitMethods) {
  const std::string model = test::Fixture("channels_last_script.pt"), out = TempDir("channels_last");
  ExpectOneLineError("actmax --device cpu --model " + model + " --layer block.3 --units 20 --steps 2 --out " + out, 2,
                     "holds its 32 channels on axis 3");
  ExpectOneLineError("dissect --device cpu --model " + model + " --layers block.3 --dataset " + test::Fixture("concepts") +
                         " --out " + out,
                     2, "channels-last");
  ExpectOneLineError("deconv --device cpu --model " + model + " --layer block.4 --rule gradient --dataset " +
                         test::Fixture("mixed_images") + " --out " + out,
                     2, "channels-last");
  EXPECT_FALSE(std::filesystem::exists(out + "/report.json"));
  std::filesystem::remove_all(out);
}

TEST(CliDeconvTest, NpyInputAndClassTarget) {
  const test::Reference reference = test::LoadReference(test::Fixture("resnet18_script_ref.pt"));
  const std::string dir = TempDir("deconv_npy");
  std::filesystem::create_directories(dir);
  const std::string input = dir + "/input.npy";
  WriteNpy(input, reference.at("input").toTensor());
  EXPECT_TRUE(ReadNpy(input).equal(reference.at("input").toTensor()));  // exact round trip
  const std::string out = dir + "/out";
  Result result = RunCli("deconv -q --device cpu --model " + test::Fixture("resnet18_script.pt") +
                         " --layer fc --units 7 --rule guided --image " + input + " --npy-values normalized " +
                         "--save-arrays --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  ASSERT_EQ(report["units"].size(), 1u);
  EXPECT_EQ(report["units"][0]["unit"], 7);  // --units is honoured with --image
  EXPECT_EQ(report["options"]["method"]["seed_from"], "position");
  const at::Tensor projection = ReadNpy(out + "/" + report["units"][0]["top"][0]["array"].get<std::string>());
  EXPECT_LT(test::RelativeError(projection, reference.at("grad:guided:logit").toTensor()[0]), 1e-5);
  // A class target over a dataset: each class's top images by logit.
  const std::string scan = dir + "/scan";
  result = RunCli("deconv -q --device cpu --model " + test::Fixture("tinycnn_script.pt") +
                  " --layer classifier --units 0-1 --top 2 --dataset " + test::Fixture("mixed_images") + " --out " + scan);
  ASSERT_EQ(result.code, 0) << result.out;
  std::ifstream scanned(scan + "/report.json");
  const auto classes = nlohmann::json::parse(scanned);
  ASSERT_EQ(classes["units"].size(), 2u);
  EXPECT_EQ(classes["units"][1]["top"].size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(scan + "/units/classifier_1.png"));
  const std::string model = " --device cpu --model " + test::Fixture("resnet18_script.pt") + " --layer fc";
  ExpectOneLineError("deconv" + model + " --image " + test::Fixture("ndl_conv3_thresholds.npy"), 3, "has shape");
  ExpectOneLineError("deconv" + model + " --image " + test::Fixture("concepts/index.csv") + ".npy", 3, "cannot be opened");
}

TEST(CliDissectTest, ErrorsAndDefaultDatasetLocation) {
  const std::string model = " --device cpu --model " + test::Fixture("planted.pt");
  ExpectOneLineError("dissect" + model + " --dataset broden --layers relu", 3, "CNNVIZ_BRODEN");
  ExpectOneLineError("dissect" + model + " --dataset " + test::Fixture("broden_no_index") + " --layers relu", 3,
                     "index.csv");
  ExpectOneLineError("dissect --device cpu --model " + test::Fixture("tinycnn_script.pt") + " --dataset " +
                         test::Fixture("concepts") + " --layers classifier",
                     2, "no spatial extent");
  ExpectOneLineError("dissect" + model + " --dataset " + test::Fixture("concepts") + " --layers relu --quantile 2", 2,
                     "--quantile");
}

TEST(CliDissectTest, AKilledRunLeavesNoReport) {
  const std::string out = TempDir("dissect_killed");
  // Killed while working (vgg16 at 224x224 needs far more than 3 s for 2 x 60 images): no report.json,
  // nothing half-written.
  RunCli("dissect -q --device cpu --model " + test::Fixture("vgg16_script.pt") + " --input-size 224 --dataset " +
         test::Fixture("concepts") + " --layers features.28 --batch 1 --out " + out + " & sleep 3; kill -9 $!");
  EXPECT_FALSE(std::filesystem::exists(out + "/report.json"));
  if (std::filesystem::exists(out)) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(out)) {
      EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
    }
  }
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

TEST(CliInvertTest, StripOfLayersWithReportAndArrays) {
  const std::string out = TempDir("invert");
  Result result = RunCli("invert -q --device cpu --model " + test::Fixture("tinycnn_script.pt") +
                         " --input-size 64 --image " + test::Fixture("mixed_images/0.png") +
                         " --layers conv1,conv3 --steps 30 --save-arrays --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  for (const char* file : {"grid.png", "original.png", "layers/conv1.png", "layers/conv3.png", "arrays/conv3.npy"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + file)) << file;
  }
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  ASSERT_EQ(report["reconstructions"].size(), 2u);
  const auto& first = report["reconstructions"][0];
  EXPECT_EQ(first["layer"], "conv1");
  EXPECT_EQ(first["method"], "optimization");
  EXPECT_EQ(first["iterations"], 30);
  for (const char* key : {"feature_error", "pixel_rmse", "psnr_db", "seconds", "lambda_tv", "learning_rate", "curve"}) {
    EXPECT_TRUE(first.contains(key)) << key;
  }
  EXPECT_EQ(report["options"]["method"]["steps"], 30);
  EXPECT_EQ(report["command"], "invert");
  const at::Tensor grid = ReadImage(out + "/grid.png");
  EXPECT_GT(grid.size(2), 3 * 64);  // original and two reconstructions side by side
}

TEST(CliInvertTest, DecoderTrainedThenUsedAndRefusedElsewhere) {
  const std::string out = TempDir("upconv");
  const std::string decoder = out + "/conv4.pt";
  const std::string model = " --device cpu --model " + test::Fixture("tinycnn_script.pt") + " --input-size 96";
  Result trained = RunCli("upconv train -q" + model + " --layer conv4 --dataset " + test::Fixture("concepts") +
                          " --epochs 1 --batch 16 --out " + decoder);
  ASSERT_EQ(trained.code, 0) << trained.out;
  ASSERT_TRUE(std::filesystem::exists(decoder));
  Result inverted = RunCli("invert -q" + model + " --image " + test::Fixture("mixed_images/0.png") + " --decoder " +
                           decoder + " --out " + out + "/inv");
  ASSERT_EQ(inverted.code, 0) << inverted.out;
  std::ifstream in(out + "/inv/report.json");
  const auto report = nlohmann::json::parse(in);
  ASSERT_EQ(report["reconstructions"].size(), 1u);
  EXPECT_EQ(report["reconstructions"][0]["method"], "decoder");
  EXPECT_EQ(report["decoder"]["layer"], "conv4");
  EXPECT_EQ(report["decoder"]["training_curve"]["val_loss"].size(), 1u);
  EXPECT_TRUE(report["decoder"].contains("beats_mean_image"));
  EXPECT_TRUE(std::filesystem::exists(out + "/inv/layers/decoder_conv4.png"));

  ExpectOneLineError("invert --device cpu --model " + test::Fixture("resnet18_script.pt") + " --image " +
                         test::Fixture("mixed_images/0.png") + " --decoder " + decoder + " --out " + out + "/x",
                     3, "trained for layer 'conv4'");
  ExpectOneLineError("invert" + model + " --image " + test::Fixture("mixed_images/0.png") + " --decoder " +
                         test::Fixture("garbage.pt") + " --out " + out + "/x",
                     3, "not a cnnviz decoder");
}

TEST(CliInvertTest, BadInputFailsBeforeWritingAnything) {
  const std::string out = TempDir("invert_bad");
  const std::string model = " --device cpu --model " + test::Fixture("tinycnn_script.pt");
  ExpectOneLineError("invert" + model + " --image " + test::Fixture("mixed_images/broken.jpg") + " --layer conv1 --out " + out,
                     3, "cannot be decoded");
  ExpectOneLineError("invert" + model + " --image " + out + "/missing.png --layer conv1 --out " + out, 3, "missing.png");
  ExpectOneLineError("invert" + model + " --image " + test::Fixture("mixed_images/0.png") + " --layer conv9 --out " + out,
                     2, "conv9");
  ExpectOneLineError("invert" + model + " --image " + test::Fixture("mixed_images/0.png") + " --out " + out, 2,
                     "--decoder");
  ExpectOneLineError("invert" + model + " --image " + test::Fixture("mixed_images/0.png") + " --layer conv1 --lr fast --out " + out,
                     2, "--lr");
  ExpectOneLineError("upconv train" + model + " --layer conv1 --dataset " + test::Fixture("empty_images") + " --out " +
                         out + "/d.pt",
                     3, "no .jpg");
  EXPECT_FALSE(std::filesystem::exists(out + "/report.json"));
}

// A .npy in the model's range is inverted like an image; sizes other than the input's are refused.
TEST(CliInvertTest, NpyImage) {
  const std::string dir = TempDir("invert_npy");
  std::filesystem::create_directories(dir);
  at::manual_seed(0);
  const at::Tensor image = at::rand({3, 64, 64});
  WriteNpy(dir + "/x.npy", image);  // the fixture's range is [0, 1]
  Result result = RunCli("invert -q --device cpu --model " + test::Fixture("tinycnn_script.pt") + " --image " + dir +
                         "/x.npy --layer conv1 --steps 2 --save-arrays --out " + dir + "/out");
  ASSERT_EQ(result.code, 0) << result.out;
  std::ifstream in(dir + "/out/report.json");
  EXPECT_EQ(nlohmann::json::parse(in)["options"]["npy_values"], "range");
  const std::string model = " --device cpu --model " + test::Fixture("tinycnn_script.pt") + " --layer conv1";
  WriteNpy(dir + "/small.npy", at::rand({3, 32, 32}));
  ExpectOneLineError("invert" + model + " --image " + dir + "/small.npy --out " + dir + "/bad", 3, "is 32x32");
  ExpectOneLineError("invert" + model + " --image " + dir + "/x.npy --npy-values pixels --out " + dir + "/bad", 2,
                     "--npy-values");
}

}  // namespace
}  // namespace cnnviz

namespace cnnviz {
namespace {

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Every path in the document that points into the folder (layers/..., network/...), recursively.
void CollectPaths(const nlohmann::json& value, std::vector<std::string>* paths) {
  if (value.is_string()) {
    const std::string text = value;
    if (text.rfind("layers/", 0) == 0 || text.rfind("network/", 0) == 0) paths->push_back(text);
  } else if (value.is_structured()) {
    for (const auto& item : value) CollectPaths(item, paths);
  }
}

// An atlas folder is complete and consistent: report.json, atlas.json valid against the documented
// schema, data.js holding the same document, the viewer's files as in the repository, and every file
// the document names on disk.
nlohmann::json CheckAtlasFolder(const std::string& out) {
  EXPECT_TRUE(std::filesystem::exists(out + "/report.json"));
  const nlohmann::json atlas = nlohmann::json::parse(ReadText(out + "/atlas.json"));
  const nlohmann::json schema = nlohmann::json::parse(ReadText(std::string(CNNVIZ_SOURCE_DIR) + "/docs/atlas.schema.json"));
  std::vector<std::string> problems;
  test::CheckSchema(atlas, schema, "atlas", &problems);
  EXPECT_TRUE(problems.empty()) << problems.size() << " schema problems, first: " << (problems.empty() ? "" : problems[0]);
  const std::string script = ReadText(out + "/data.js");
  const std::string prefix = "window.CNNVIZ_DATA = ";
  EXPECT_EQ(script.rfind(prefix, 0), 0u);
  EXPECT_EQ(nlohmann::json::parse(script.substr(prefix.size(), script.rfind(';') - prefix.size())), atlas);
  for (const char* file : {"index.html", "viewer.js", "viewer.css"}) {
    EXPECT_EQ(ReadText(out + "/" + file), ReadText(std::string(CNNVIZ_SOURCE_DIR) + "/apps/viewer/" + file)) << file;
  }
  std::vector<std::string> paths;
  CollectPaths(atlas, &paths);
  EXPECT_GT(paths.size(), 10u);
  for (const auto& path : paths) EXPECT_TRUE(std::filesystem::exists(out + "/" + path)) << path;
  return atlas;
}

TEST(CliAtlasTest, PagesFilesSchemaAndPlantedConcepts) {
  const std::string out = TempDir("atlas_planted");
  Result result = RunCli("atlas --device cpu --model " + test::Fixture("planted.pt") + " --dataset " +
                         test::Fixture("concepts") + " --layers relu --steps 16 --samples 300 --grid 5 --inversions 1 " +
                         "--inversion-steps 10 --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_NE(result.out.find("atlas stage 1/5 scan"), std::string::npos) << result.out;
  const nlohmann::json atlas = CheckAtlasFolder(out);
  EXPECT_EQ(atlas["dataset"]["kind"], "broden");
  EXPECT_EQ(atlas["dataset"]["images"], 60);
  ASSERT_EQ(atlas["layers"].size(), 1u);
  const auto& layer = atlas["layers"][0];
  EXPECT_EQ(layer["name"], "relu");
  // The planted colour detectors carry their colour on their unit records (what the unit pages show).
  const std::vector<std::string> colours = {"red-c", "green-c", "blue-c", "white-c"};
  for (size_t k = 0; k < colours.size(); ++k) {
    EXPECT_EQ(layer["units"][k]["label"], colours[k]) << k;
    EXPECT_EQ(layer["units"][k]["category"], "color") << k;
    EXPECT_EQ(layer["units"][k]["top"].size(), 4u);
    int64_t counted = 0;
    for (const auto& count : layer["units"][k]["histogram"]["counts"]) counted += count.get<int64_t>();
    EXPECT_EQ(counted, 60);
  }
  EXPECT_EQ(layer["per_category"]["color"]["unique_concepts"].get<int64_t>(), layer["detectors"].get<int64_t>());
  // The activation atlas: cells drawn where at least min_count samples fall, labelled by concepts.
  const auto& cells = layer["atlas"]["cells"];
  ASSERT_GT(cells.size(), 3u);
  int64_t in_cells = 0;
  for (const auto& cell : cells) {
    EXPECT_GE(cell["count"].get<int64_t>(), 3);
    in_cells += cell["count"].get<int64_t>();
  }
  EXPECT_LE(in_cells, 300);
  EXPECT_EQ(layer["atlas"]["points"].size(), 300u);
  EXPECT_EQ(atlas["network"]["inversions"]["samples"][0]["layers"].size(), 1u);
  EXPECT_TRUE(atlas["network"]["classes"].is_null());  // the planted model has no class output
}

// Killed in the middle of a stage, then run again: the folder equals an uninterrupted run's, file for
// file (numbers and images), and the finished stages were not redone.
TEST(CliAtlasTest, AKilledRunResumesToTheSameAtlas) {
  const std::string whole = TempDir("atlas_whole"), resumed = TempDir("atlas_resumed");
  const std::string arguments = "atlas --device cpu --model " + std::string(CNNVIZ_SOURCE_DIR) + "/models/tinycnn.pt" +
                                " --dataset " + test::Fixture("concepts") + " --layers conv1,conv2 --images 40 " +
                                "--steps 24 --diversity 1 --samples 200 --grid 4 --inversions 1 --inversion-steps 10 " +
                                "--classes 0,1 --batch 8 --out ";
  Result result = RunCli(arguments + whole);
  ASSERT_EQ(result.code, 0) << result.out;
  // Kill -9 once the fourth stage (actmax conv1) has started.
  const std::string log = resumed + ".log";
  const std::string command = "OMP_NUM_THREADS=1 " + std::string(CNNVIZ_BINARY) + " " + arguments + resumed + " 2> " +
                              log + " & pid=$!; for i in $(seq 1 3000); do grep -q 'stage 4/' " + log +
                              " && break; sleep 0.01; done; kill -9 $pid; wait $pid 2>/dev/null; true";
  ASSERT_EQ(std::system(command.c_str()), 0);
  ASSERT_NE(ReadText(log).find("stage 4/"), std::string::npos) << ReadText(log);
  EXPECT_FALSE(std::filesystem::exists(resumed + "/report.json"));
  EXPECT_FALSE(std::filesystem::exists(resumed + "/data.js"));  // no page points at missing files
  result = RunCli(arguments + resumed);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_NE(result.out.find("finished earlier, kept"), std::string::npos) << result.out;
  nlohmann::json a = CheckAtlasFolder(whole), b = CheckAtlasFolder(resumed);
  int64_t kept = 0;
  for (const auto& stage : b["stages"]) kept += stage["resumed"].get<bool>() ? 1 : 0;
  EXPECT_GE(kept, 3);
  for (auto* doc : {&a, &b}) {
    for (const char* key : {"created", "stages"}) doc->erase(key);
    (*doc)["options"].erase("out");
  }
  EXPECT_EQ(a, b);
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(whole)) {
    const std::string relative = std::filesystem::relative(entry.path(), whole).string();
    if (!entry.is_regular_file() || relative.rfind("stages", 0) == 0 || entry.path().extension() != ".png") continue;
    ++files;
    EXPECT_EQ(ReadText(entry.path().string()), ReadText(resumed + "/" + relative)) << relative;
  }
  EXPECT_GT(files, 100u);
  std::filesystem::remove_all(whole);
  std::filesystem::remove_all(resumed);
}

TEST(CliAtlasTest, PlainImageFolderAndBadRequests) {
  const std::string out = TempDir("atlas_plain");
  const std::string model = " --device cpu --model " + std::string(CNNVIZ_SOURCE_DIR) + "/models/tinycnn.pt";
  Result result = RunCli("atlas -q" + model + " --dataset " + test::Fixture("concepts") + "/images --layers conv3 " +
                         "--images 30 --steps 8 --diversity 1 --samples 100 --grid 3 --inversions 0 --classes none --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  const nlohmann::json atlas = CheckAtlasFolder(out);
  EXPECT_EQ(atlas["dataset"]["kind"], "images");
  EXPECT_EQ(atlas["dataset"]["images"], 30);
  EXPECT_TRUE(atlas["network"]["concepts_by_layer"].is_null());
  EXPECT_TRUE(atlas["network"]["inversions"].is_null());
  EXPECT_TRUE(atlas["layers"][0]["detectors"].is_null());
  EXPECT_EQ(atlas["layers"][0]["units"][0]["label"], "");
  EXPECT_FALSE(atlas["warnings"].empty());
  const std::string dataset = " --dataset " + test::Fixture("concepts");
  ExpectOneLineError("atlas" + model + dataset + " --grid 0 --out " + out, 2, "--grid");
  ExpectOneLineError("atlas" + model + dataset + " --classes 12 --out " + out, 2, "class 12 is out of range");
  ExpectOneLineError("atlas" + model + dataset + " --layers classifier --out " + out, 2, "no spatial extent");
  ExpectOneLineError("atlas" + model + " --dataset /nonexistent/folder --out " + out, 3, "/nonexistent/folder");
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace cnnviz
