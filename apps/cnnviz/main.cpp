// cnnviz: what a convolutional network has learned, from the command line.
// The whole CLI is the table below; each subcommand lives in its own file.
#include <CLI/CLI.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <csignal>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>
#include <vector>

#include "cnnviz/actmax_command.h"
#include "cnnviz/adversarial_command.h"
#include "cnnviz/atlas_command.h"
#include "cnnviz/common.h"
#include "cnnviz/compare_command.h"
#include "cnnviz/deconv_command.h"
#include "cnnviz/dissect_command.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/memory.h"
#include "cnnviz/core/version.h"
#include "cnnviz/invert_command.h"
#include "cnnviz/io/atomic_file.h"
#include "cnnviz/layers_command.h"

namespace {

using AddCommand = std::function<void()> (*)(CLI::App&, const cnnviz::app::GlobalOptions&);
const AddCommand kCommands[] = {&cnnviz::app::AddLayersCommand, &cnnviz::app::AddActMaxCommand,
                                 &cnnviz::app::AddInvertCommand,  &cnnviz::app::AddUpconvCommand,
                                 &cnnviz::app::AddDeconvCommand,  &cnnviz::app::AddDissectCommand,
                                 &cnnviz::app::AddAtlasCommand,   &cnnviz::app::AddAdversarialCommand, &cnnviz::app::AddCompareCommand};

int Fail(cnnviz::ExitCode code, const std::string& message) {
  std::cerr << "cnnviz: error: " << message << '\n';
  return static_cast<int>(code);
}

// SIGINT, SIGTERM, SIGHUP: remove the file being written and stop at once with 128 + the signal. The
// output folder then has no report.json (written last), and the next run on it removes what is left.
extern "C" void OnFatalSignal(int signal) {
  cnnviz::RemoveTemporariesNow();
  const char* name = signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "SIGHUP";
  const char prefix[] = "cnnviz: interrupted by ";
  const char suffix[] = "; the output is unfinished (no report.json)\n";
  ssize_t ignored = ::write(2, prefix, sizeof(prefix) - 1);
  ignored = ::write(2, name, std::strlen(name));
  ignored = ::write(2, suffix, sizeof(suffix) - 1);
  (void)ignored;
  ::_exit(128 + signal);
}

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnFatalSignal;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &action, nullptr);
  // A file-size limit (ulimit -f) then fails writes with EFBIG, reported like a full disk, instead of
  // killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
}

// The user-facing line and exit code for an unexpected exception's message (LibTorch's errors, and the
// TorchScript interpreter's, which are std::runtime_errors).
int FailUnexpected(const std::string& message) {
  // An error raised by the model's own code (or an op failing inside it): the interpreter's first line
  // says only that; the cause is on the last line.
  if (message.find("The following operation failed in the TorchScript interpreter") != std::string::npos) {
    std::string cause;
    std::istringstream lines(message);
    for (std::string line; std::getline(lines, line);) {
      const size_t start = line.find_first_not_of(" \t");
      if (start != std::string::npos) cause = line.substr(start);
    }
    return Fail(cnnviz::ExitCode::kModel, "the model failed while running: " + cnnviz::FirstLine(cause));
  }
  if (message.find("can't allocate memory") != std::string::npos ||
      message.find("out of memory") != std::string::npos) {
    return Fail(cnnviz::ExitCode::kModel, "not enough memory for this run (" + cnnviz::FirstLine(message) +
                                              "): ask for fewer units or images per batch, or a smaller size");
  }
  return Fail(cnnviz::ExitCode::kInternal, cnnviz::FirstLine(message));
}

}  // namespace

int main(int argc, char** argv) {
  cnnviz::KeepFreedMemory();
  InstallSignalHandlers();
  CLI::App app("cnnviz " + cnnviz::Version() +
               ": see what a convolutional network has learned (TorchScript models, CPU or CUDA)");
  app.set_version_flag("--version", "cnnviz " + cnnviz::Version() + " (LibTorch " + cnnviz::TorchVersion() + ")");
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(
      "Run `cnnviz <command> --help` for a command's flags and examples.\n"
      "Exit codes: 0 ok, 1 internal error (a bug), 2 usage error, 3 bad input file or unusable output, 4 model\n"
      "cannot run as asked (also: not enough memory), 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM (the output\n"
      "folder is then unfinished: it has no report.json, which every command writes last).");
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
    return FailUnexpected(e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    return Fail(cnnviz::ExitCode::kModel,
                "not enough memory for this run: ask for fewer units or images per batch, or a smaller size");
  } catch (const std::exception& e) {
    return FailUnexpected(e.what());
  }
  return 0;
}
