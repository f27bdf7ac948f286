// Bad input, faults and interruptions (README.md, "Exit codes"): every case of the reliability catalogue
// gives its documented exit code and a one-line message naming the problem, never exit 1 (a bug), a
// crash or a half-written output folder.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include <ATen/ATen.h>

#include "cli_util.h"
#include "cnnviz/io/image.h"
#include "test_util.h"

extern char** environ;

namespace cnnviz {
namespace {
namespace fs = std::filesystem;
using test::ExpectOneLineError;
using test::Result;
using test::RunCli;
using test::TempDir;

const std::string kModel = " --device cpu --model ";

std::string Tiny() { return kModel + test::Fixture("tinycnn_script.pt"); }

// A copy of a fixture folder to damage.
std::string CopyOf(const std::string& fixture, const std::string& name) {
  const std::string dir = TempDir(name);
  fs::copy(test::Fixture(fixture), dir, fs::copy_options::recursive);
  return dir;
}

// Files under `dir` whose name marks an unfinished write.
int Temporaries(const std::string& dir) {
  int count = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    count += it->path().filename().string().find(".tmp") != std::string::npos;
  }
  return count;
}

TEST(ReliabilityTest, NumbersTooLargeAreUsageErrors) {
  const std::string out = " --out " + TempDir("numbers");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --units 99999999999999999999" + out, 2, "too large");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --units 0-3000000000" + out, 2, "too large");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --units 0-9999999" + out, 2, "more than 1000000 units");
  ExpectOneLineError("actmax" + Tiny() + " --expr conv5:99999999999999999999" + out, 2, "too large");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --unit 1 --size 100000" + out, 2, "at most 4096");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --units ''" + out, 2, "unit list is empty");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --units 1," + out, 2, "'' is not a unit");
  ExpectOneLineError("deconv" + Tiny() + " --layer conv5 --units 1,,2 --dataset " + test::Fixture("mixed_images") + out,
                     2, "'' is not a unit");
  ExpectOneLineError("actmax" + Tiny() + " --expr conv5:3@100,100 --steps 1" + out, 2, "outside the layer");
  ExpectOneLineError("actmax" + Tiny() + " --layer conv5 --unit 1 --seed -1" + out, 2, "--seed");
}

TEST(ReliabilityTest, MalformedFilesAreInputErrors) {
  const std::string out = " --out " + TempDir("files");
  // Broden: label numbers that do not fit, segmentation sizes of 0, negative or huge.
  const std::string broden = CopyOf("concepts", "broden_numbers");
  std::ifstream index_in(broden + "/index.csv");
  std::string header, row;
  std::getline(index_in, header);
  std::getline(index_in, row);
  index_in.close();
  const std::string dissect = "dissect" + Tiny() + " --layers conv3 --dataset " + broden + out;
  for (const std::string size : {"0,0", "-1,-1", "100000,100000", "48.5,48"}) {
    std::string bad = row;
    bad.replace(bad.find("48,48"), 5, size);
    std::ofstream(broden + "/index.csv", std::ios::trunc) << header << "\n" << bad << "\n";
    ExpectOneLineError(dissect, 3, "segmentation size");
  }
  std::string bad = row;
  bad.replace(bad.rfind(',') + 1, std::string::npos, "99999999999999999999");
  std::ofstream(broden + "/index.csv", std::ios::trunc) << header << "\n" << bad << "\n";
  ExpectOneLineError(dissect, 3, "not in label.csv");
  std::ofstream(broden + "/index.csv", std::ios::trunc) << header << "\n" << row << "\n";
  std::ofstream(broden + "/label.csv", std::ios::app) << "99999999999999999999,huge,color(1),1,1.0,\n";
  ExpectOneLineError(dissect, 3, "label number");
  ExpectOneLineError("dissect" + Tiny() + " --layers conv3 --dataset " + test::Fixture("concepts/index.csv") + out, 3,
                     "is a file");
  ExpectOneLineError("deconv" + Tiny() + " --layer conv3 --dataset " + test::Fixture("concepts/index.csv") + out, 3,
                     "is a file");

  // Sidecars: fractional or huge sizes.
  const std::string models = TempDir("sidecars");
  fs::create_directories(models);
  fs::copy_file(test::Fixture("tinycnn_script.pt"), models + "/m.pt");
  for (const auto& [size, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"[96.7, 96.2]", "whole numbers"}, {"[100000, 100000]", "8192"}}) {
    std::ofstream(models + "/m.json", std::ios::trunc) << R"({"input": {"size": )" << size << "}}";
    ExpectOneLineError("layers" + kModel + models + "/m.pt", 3, fragment);
  }
}

// A model file with flipped bytes loads nothing: its zip entries' CRC-32 no longer match.
TEST(ReliabilityTest, CorruptedModelFilesAreRefused) {
  const std::string dir = TempDir("corrupt_model");
  fs::create_directories(dir);
  const std::string path = dir + "/m.pt";
  fs::copy_file(test::Fixture("tinycnn_script.pt"), path);
  fs::copy_file(test::Fixture("tinycnn_script.json"), dir + "/m.json");
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = static_cast<std::streamoff>(fs::file_size(path));
  file.seekg(size / 2);
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x5A);
  file.seekp(size / 2);
  file.write(&byte, 1);
  file.close();
  ExpectOneLineError("layers" + kModel + path, 3, "fails its CRC-32 check");
}

TEST(ReliabilityTest, ModelsThatRaiseSayWhy) {
  ExpectOneLineError("actmax" + kModel + test::Fixture("raises.pt") + " --objective class --unit 0 --steps 1 --out " +
                         TempDir("raises"),
                     4, "shape '[-1, 1000003]' is invalid");
}

// Masks that are not 8-bit RGB PNGs, and truncated images, are skipped and named, never misread.
TEST(ReliabilityTest, BadMasksAndTruncatedImagesAreSkippedWithTheReason) {
  const std::string broden = CopyOf("concepts", "broden_bad_files");
  const std::string synth = broden + "/images/synth/";
  fs::copy_file(test::Fixture("mask16.png"), synth + "000001_color.png", fs::copy_options::overwrite_existing);
  WritePng(synth + "000002_color.png", at::zeros({1, 48, 48}));  // 8-bit greyscale
  fs::resize_file(synth + "000003.jpg", fs::file_size(synth + "000003.jpg") / 2);
  const std::string out = TempDir("bad_files_out");
  Result result = RunCli("dissect -q" + Tiny() + " --layers conv3 --dataset " + broden + " --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  std::ifstream in(out + "/report.json");
  const auto report = nlohmann::json::parse(in);
  ASSERT_EQ(report["images_skipped"], 3) << report["skipped"].dump();
  const std::string reasons = report["skipped"].dump();
  for (const char* fragment : {"16-bit PNG", "greyscale PNG", "truncated JPEG"}) {
    EXPECT_NE(reasons.find(fragment), std::string::npos) << reasons;
  }
  ExpectOneLineError("deconv" + Tiny() + " --layer conv3 --image " + synth + "000003.jpg --out " + out, 3,
                     "truncated JPEG");
}

// A second run on an output in use is refused; temporaries and the report of a killed run are cleaned
// up by the next run.
TEST(ReliabilityTest, BusyOutputsAreRefusedAndDeadRunsCleanedUp) {
  const std::string out = TempDir("busy");
  fs::create_directories(out);
  const int fd = ::open((out + "/.cnnviz.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  ExpectOneLineError("actmax" + Tiny() + " --layer conv1 --units 0 --steps 2 --size 32 --out " + out, 3,
                     "in use by another cnnviz run");
  const std::string decoder = out + "/d.pt";
  const int decoder_fd = ::open((out + "/.d.pt.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_EQ(::flock(decoder_fd, LOCK_EX), 0);
  ExpectOneLineError("upconv train" + Tiny() + " --layer conv1 --dataset " + test::Fixture("mixed_images") +
                         " --epochs 1 --out " + decoder,
                     3, "in use by another cnnviz run");
  ::close(fd);
  ::close(decoder_fd);

  // What a run killed by SIGKILL leaves: a temporary of a dead process and an earlier report.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  fs::create_directories(out + "/units");
  const std::string stale = out + "/units/.conv1_0.png.tmp" + std::to_string(dead);
  std::ofstream(stale) << "half a file";
  std::ofstream(out + "/report.json") << "{\"stale\": true}";
  Result result = RunCli("actmax -q" + Tiny() + " --layer conv1 --units 0 --steps 2 --size 32 --out " + out);
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_FALSE(fs::exists(stale));
  std::ifstream in(out + "/report.json");
  EXPECT_FALSE(nlohmann::json::parse(in).contains("stale"));
}

// SIGINT and SIGTERM stop a run at once with 130 and 143, leaving no temporary and no report.json.
TEST(ReliabilityTest, InterruptedRunsExitWithTheSignalAndLeaveNoReport) {
  for (const int signal : {SIGINT, SIGTERM}) {
    const std::string out = TempDir("interrupted_" + std::to_string(signal));
    const std::string steps = "100000";
    std::vector<std::string> args = {CNNVIZ_BINARY, "actmax", "-q", "--device", "cpu", "--model",
                                     test::Fixture("tinycnn_script.pt"), "--layer", "conv3", "--units", "0-3",
                                     "--steps", steps, "--out", out};
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    ASSERT_EQ(::posix_spawn(&pid, CNNVIZ_BINARY, nullptr, nullptr, argv.data(), environ), 0);
    // Wait until the run has claimed its folder (the model is loaded and optimization is under way).
    for (int i = 0; i < 300 && !fs::exists(out + "/.cnnviz.lock"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ::kill(pid, signal);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 128 + signal);
    EXPECT_FALSE(fs::exists(out + "/report.json"));
    EXPECT_EQ(Temporaries(out), 0);
  }
}

// A full disk (simulated by a file-size limit: writes fail with EFBIG) is a one-line input error that
// leaves no temporary and no report, for every command that writes.
TEST(ReliabilityTest, AFullDiskIsAnErrorWithNothingPartial) {
  const std::string limit = "ulimit -f 16;";  // 16 KiB: the first PNGs fit, later files do not
  const std::string root = TempDir("full_disk");
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"dissect", "dissect" + Tiny() + " --layers conv3 --dataset " + test::Fixture("concepts") + " --out " + root + "/dissect"},
      {"actmax", "actmax" + Tiny() + " --layer conv3 --units 0-15 --steps 2 --save-arrays --out " + root + "/actmax"},
      {"deconv", "deconv" + Tiny() + " --layer conv3 --units 0-7 --dataset " + test::Fixture("mixed_images") +
                     " --save-arrays --out " + root + "/deconv"},
      {"invert", "invert" + Tiny() + " --image " + test::Fixture("mixed_images/0.png") +
                     " --layers conv1,conv2 --steps 2 --save-arrays --out " + root + "/invert"},
      {"upconv", "upconv train" + Tiny() + " --layer conv1 --dataset " + test::Fixture("concepts") +
                     " --max-images 12 --epochs 1 --out " + root + "/upconv/d.pt"}};
  for (const auto& [name, arguments] : runs) {
    ExpectOneLineError(arguments, 3, "cannot write", limit);
    EXPECT_FALSE(fs::exists(root + "/" + name + "/report.json")) << name;
    EXPECT_EQ(Temporaries(root + "/" + name), 0) << name;
  }
}

}  // namespace
}  // namespace cnnviz
