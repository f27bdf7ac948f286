#include "cnnviz/common.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/seed.h"

namespace cnnviz::app {

void AddGlobalOptions(CLI::App& app, GlobalOptions& options) {
  app.add_option("--log-level", options.log_level, "Diagnostics on stderr: trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_flag("-q,--quiet", options.quiet, "Only errors on stderr (same as --log-level error)");
  app.add_option("--seed", options.seed, "Seed for every random generator; same seed, same output")
      ->capture_default_str();
  app.add_option("--device", options.device, "auto (CUDA when available), cpu, cuda or cuda:N")
      ->capture_default_str();
}

void SetupLogging(const GlobalOptions& options) {
  auto logger = spdlog::get("cnnviz");
  if (!logger) {
    logger = spdlog::stderr_color_mt("cnnviz");
    logger->set_pattern("%^[%l]%$ %v");
  }
  const auto level = options.quiet ? spdlog::level::err : spdlog::level::from_str(options.log_level);
  spdlog::set_level(level);
}

void AddModelOptions(CLI::App& command, ModelOptions& options) {
  command.add_option("-m,--model", options.path, "TorchScript model file (its sidecar MODEL.json is read too)")
      ->required();
  command.add_option("--input-size", options.input_size, "Square input side in pixels (default: the sidecar's)")
      ->check(CLI::Range(int64_t{1}, int64_t{8192}));
}

std::shared_ptr<Model> LoadModel(const ModelOptions& model, const GlobalOptions& global) {
  SeedEverything(global.seed);
  std::shared_ptr<Model> loaded = Model::Load(model.path, ResolveDevice(global.device));
  if (model.input_size) {
    loaded->mutable_input_spec().height = *model.input_size;
    loaded->mutable_input_spec().width = *model.input_size;
  }
  return loaded;
}

}  // namespace cnnviz::app
