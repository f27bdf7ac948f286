#include "cnnviz/common.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <ATen/Parallel.h>

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

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
  app.add_option("--threads", options.threads,
                 "CPU threads for tensor ops (default 1; every core when OMP_WAIT_POLICY=PASSIVE is set)")
      ->check(CLI::Range(0, 1024));
}

void SetupLogging(const GlobalOptions& options) {
  auto logger = spdlog::get("cnnviz");
  if (!logger) {
    logger = spdlog::stderr_color_mt("cnnviz");
    logger->set_pattern("%^[%l]%$ %v");
  }
  const auto level = options.quiet ? spdlog::level::err : spdlog::level::from_str(options.log_level);
  spdlog::set_level(level);
  // OpenMP's default busy-waiting makes multi-threaded runs stall on small machines; with passive
  // waiting every core helps. The policy is read when the process starts, so it is only observed here.
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const bool passive = policy != nullptr && std::string(policy) == "PASSIVE";
  int threads = options.threads;
  if (threads == 0) threads = passive ? UsableCores() : 1;
  at::set_num_threads(std::max(1, threads));
}

int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void AddModelOptions(CLI::App& command, ModelOptions& options) {
  command.add_option("-m,--model", options.path, "TorchScript model file (its sidecar MODEL.json is read too)")
      ->required();
  command.add_option("--input-size", options.input_size, "Square input side in pixels (default: the sidecar's)")
      ->check(CLI::Range(int64_t{1}, int64_t{8192}));
}

std::vector<std::string> ConvolutionLayers(const Probe& probe, const std::string& flag) {
  std::vector<std::string> layers;
  for (const auto& layer : probe.layers()) {
    if (layer.type == "Conv2d" && layer.tappable && layer.shape.size() == 4) layers.push_back(layer.name);
  }
  if (layers.empty()) throw UsageError(flag + ": the model has no Conv2d layers; name layers instead");
  return layers;
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
