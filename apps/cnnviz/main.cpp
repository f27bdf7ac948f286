// cnnviz: what a convolutional network has learned, from the command line.
// The whole CLI is the table below; each subcommand lives in its own file.
#include <CLI/CLI.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <malloc.h>

#include <climits>
#include <cstdlib>
#include <memory>
#include <csignal>
#include <functional>
#include <iostream>
#include <vector>

#include "cnnviz/actmax_command.h"
#include "cnnviz/common.h"
#include "cnnviz/deconv_command.h"
#include "cnnviz/dissect_command.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/version.h"
#include "cnnviz/invert_command.h"
#include "cnnviz/layers_command.h"

namespace {

using AddCommand = std::function<void()> (*)(CLI::App&, const cnnviz::app::GlobalOptions&);
const AddCommand kCommands[] = {&cnnviz::app::AddLayersCommand, &cnnviz::app::AddActMaxCommand,
                                 &cnnviz::app::AddInvertCommand,  &cnnviz::app::AddUpconvCommand,
                                 &cnnviz::app::AddDeconvCommand,  &cnnviz::app::AddDissectCommand};

int Fail(cnnviz::ExitCode code, const std::string& message) {
  std::cerr << "cnnviz: error: " << message << '\n';
  return static_cast<int>(code);
}

}  // namespace

int main(int argc, char** argv) {
  // cnnviz frees and reallocates tensors of the same sizes at every step and every batch. glibc would
  // hand blocks above its mmap threshold back to the kernel and page-fault them in again each time (a
  // quarter of an activation-maximization step, measured); keep freed memory in the heap instead.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  CLI::App app("cnnviz " + cnnviz::Version() +
               ": see what a convolutional network has learned (TorchScript models, CPU or CUDA)");
  app.set_version_flag("--version", "cnnviz " + cnnviz::Version() + " (LibTorch " + cnnviz::TorchVersion() + ")");
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(
      "Run `cnnviz <command> --help` for a command's flags and examples.\n"
      "Exit codes: 0 ok, 1 internal error, 2 usage error, 3 bad input file, 4 model cannot run as asked.");
  cnnviz::app::GlobalOptions global;
  cnnviz::app::AddGlobalOptions(app, global);
  std::vector<std::function<void()>> runners;
  for (AddCommand add : kCommands) runners.push_back(add(app, global));

  std::string names;
  bool known = argc < 2 || argv[1][0] == '-';
  for (const CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; })) {
    names += (names.empty() ? "" : ", ") + command->get_name();
    known = known || command->get_name() == argv[1];
  }
  if (!known) {
    return Fail(cnnviz::ExitCode::kUsage, "unknown command '" + std::string(argv[1]) + "' (commands: " + names + ")");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return Fail(cnnviz::ExitCode::kUsage, std::string(e.what()) + " (see --help)");
  }
  try {
    cnnviz::app::SetupLogging(global);
    // For developers: CNNVIZ_PROFILE=FILE records every ATen op of the run as a chrome://tracing file
    // (bench/profile_summary.py turns it into a per-op table).
    std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
    if (const char* trace = std::getenv("CNNVIZ_PROFILE")) {
      profile = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(trace));
    }
    for (auto& run : runners) run();
  } catch (const cnnviz::Error& e) {
    return Fail(e.code(), e.what());
  } catch (const c10::Error& e) {
    return Fail(cnnviz::ExitCode::kInternal, cnnviz::FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return Fail(cnnviz::ExitCode::kInternal, cnnviz::FirstLine(e.what()));
  }
  return 0;
}
