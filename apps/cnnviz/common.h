// What every subcommand shares: global flags, logging setup, model loading.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/model/model.h"
#include "cnnviz/model/probe.h"

namespace cnnviz::app {

// Flags accepted by every subcommand (before or after its name).
struct GlobalOptions {
  std::string log_level = "info";  // trace|debug|info|warn|error|off
  bool quiet = false;              // same as --log-level error
  uint64_t seed = 0;               // seeds every random generator
  std::string device = "auto";     // auto|cpu|cuda|cuda:N
  int threads = 0;                 // intra-op CPU threads; 0 = 1, or every core when OMP_WAIT_POLICY=PASSIVE
};

// Adds the global flags to `app` (the top-level app; subcommands inherit them by fallthrough).
void AddGlobalOptions(CLI::App& app, GlobalOptions& options);

// Sends logs to stderr at the chosen level and sets the intra-op threads. Call once after parsing.
void SetupLogging(const GlobalOptions& options);

// Cores this process may run on (its CPU affinity, which containers and taskset narrow; at least 1).
int UsableCores();

// Model flags shared by subcommands that load a model.
struct ModelOptions {
  std::string path;                  // --model: TorchScript file
  std::optional<int64_t> input_size;  // --input-size: square side overriding the sidecar
};
void AddModelOptions(CLI::App& command, ModelOptions& options);

// Every tappable Conv2d output with spatial extent, in forward order ("--layers all-conv"). Throws
// UsageError naming `flag` when the model has none.
std::vector<std::string> ConvolutionLayers(const Probe& probe, const std::string& flag);

// Loads the model on the chosen device and applies flag overrides.
std::shared_ptr<Model> LoadModel(const ModelOptions& model, const GlobalOptions& global);

}  // namespace cnnviz::app
