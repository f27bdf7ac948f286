#include "cnnviz/common.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/seed.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/io/atomic_file.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/report.h"
#include "cnnviz/units.h"

namespace cnnviz::app {
namespace fs = std::filesystem;

void AddGlobalOptions(CLI::App& app, GlobalOptions& options) {
  app.add_option("--log-level", options.log_level, "Diagnostics on stderr: trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_flag("-q,--quiet", options.quiet, "Only errors on stderr (same as --log-level error)");
  app.add_option("--seed", options.seed, "Seed for every random generator; same seed, same output")
      ->check([](const std::string& text) {
        const bool digits = !text.empty() && text.size() <= 19 && text.find_first_not_of("0123456789") == std::string::npos;
        return digits ? std::string() : "--seed must be a non-negative integer below 10^19, not '" + text + "'";
      })
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

std::vector<std::string> ResolveLayerList(const std::string& text, const Probe& probe) {
  if (text != "all" && text != "all-conv") return SplitList(text);
  std::vector<std::string> layers;
  if (text == "all") {
    for (const LayerInfo& layer : probe.layers()) {
      if (!layer.alias.empty() && layer.tappable) layers.push_back(layer.alias);
    }
  }
  return layers.empty() ? ConvolutionLayers(probe, "--layers " + text) : layers;
}

ModelInput ReadModelInput(const std::string& path, const Model& model, const std::string& npy_values) {
  const InputSpec& spec = model.input_spec();
  ModelInput out;
  const std::string extension = fs::path(path).extension().string();
  if (extension != ".npy" && extension != ".NPY") {
    out.raw = at::upsample_bilinear2d(ReadImage(path).unsqueeze(0), {spec.height, spec.width}, false)[0];
    out.image = out.raw.clamp(0, 1);
    out.input = model.Preprocess(out.raw.unsqueeze(0));
    return out;
  }
  out.from_npy = true;
  at::Tensor values = ReadNpy(path, "--image");
  if (values.dim() == 4 && values.size(0) == 1) values = values[0];
  if (values.dim() != 3 || values.size(0) != spec.channels) {
    throw InputError("--image '" + path + "' has shape " + c10::str(values.sizes()) + "; expected [" +
                     std::to_string(spec.channels) + ",H,W] or [1," + std::to_string(spec.channels) + ",H,W]");
  }
  if (!at::isFloatingType(values.scalar_type())) {
    throw InputError("--image '" + path + "' holds " + std::string(c10::toString(values.scalar_type())) +
                     " values; expected float32 or float64");
  }
  if (values.size(1) != spec.height || values.size(2) != spec.width) {
    throw InputError("--image '" + path + "' is " + std::to_string(values.size(1)) + "x" + std::to_string(values.size(2)) +
                     " but the model takes " + std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                     ": a .npy is used as given, not resized (pass --input-size, or resize it)");
  }
  if (!at::isfinite(values).all().item<bool>()) throw InputError("--image '" + path + "' holds NaN or infinite values");
  const at::Tensor batch = values.to(at::kFloat).unsqueeze(0);
  out.input = npy_values == "normalized" ? batch.to(model.device()) : model.Normalize(batch);
  out.raw = model.Deprocess(out.input)[0].to(at::kCPU);
  out.image = out.raw.clamp(0, 1);
  return out;
}

void AddNpyValuesOption(CLI::App& command, std::string& npy_values) {
  command
      .add_option("--npy-values", npy_values,
                  "What a .npy --image holds: range (the model's channel order and value range, before mean/std "
                  "normalization) or normalized (the model's input itself)")
      ->check(CLI::IsMember({"range", "normalized"}))
      ->capture_default_str();
}

namespace {

// Locks `lock_path` for the rest of the process (the descriptor stays open; the kernel releases the
// lock when the process ends, however it ends). `what` names the output in messages.
void LockForThisProcess(const fs::path& lock_path, const std::string& what) {
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError("cannot write in " + what + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char buffer[32] = {0};
    const ssize_t n = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
    std::string holder = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
    holder.erase(std::remove_if(holder.begin(), holder.end(), [](char c) { return !std::isdigit(static_cast<unsigned char>(c)); }),
                 holder.end());
    ::close(fd);
    throw InputError(what + " is in use by another cnnviz run" + (holder.empty() ? "" : " (pid " + holder + ")") +
                     ": wait for it or choose another --out");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock holds without the pid; the file only helps the message above.
  }
}

}  // namespace

OutputFolder::OutputFolder(const std::string& folder) : path_(folder) {
  std::error_code ec;
  if (fs::exists(folder, ec) && !fs::is_directory(folder, ec)) {
    throw InputError("output folder '" + folder + "' is a file");
  }
  fs::create_directories(folder, ec);
  if (ec) throw InputError("cannot create output folder '" + folder + "': " + ec.message());
  LockForThisProcess(fs::path(folder) / ".cnnviz.lock", "output folder '" + folder + "'");
  const size_t stale = RemoveStaleTemporaries(folder);
  if (stale) Log()->info("removed {} temporary file(s) an interrupted run left in {}", stale, folder);
  fs::remove(fs::path(folder) / "report.json", ec);
}

std::string OutputFolder::Folder(const std::string& relative) const {
  const fs::path folder = fs::path(path_) / relative;
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw InputError("cannot create folder '" + folder.string() + "': " + ec.message());
  return folder.string();
}

std::string OutputFolder::File(const std::string& relative) const {
  const fs::path parent = fs::path(relative).parent_path();
  if (!parent.empty()) Folder(parent.string());
  return (fs::path(path_) / relative).string();
}

void OutputFolder::Finish(const nlohmann::json& report) const { WriteJson(File("report.json"), report); }

void ClaimOutputFile(const std::string& file) {
  const fs::path target(file);
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw InputError("cannot create folder '" + parent.string() + "': " + ec.message());
  LockForThisProcess(parent / ("." + target.filename().string() + ".lock"), "output '" + file + "'");
  RemoveStaleTemporaries(parent.string(), /*recursive=*/false);
}

std::shared_ptr<Model> LoadModel(const ModelOptions& model, const GlobalOptions& global) {
  SeedEverything(global.seed);
  // Large models take seconds to read and check: say so rather than stay silent.
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(model.path, ec);
  const bool large = !ec && bytes >= kLargeModelBytes;
  const auto started = std::chrono::steady_clock::now();
  if (large) Log()->info("loading {} ({} MiB)", model.path, bytes >> 20);
  std::shared_ptr<Model> loaded = Model::Load(model.path, ResolveDevice(global.device));
  if (large) {
    Log()->info("loaded {} in {:.1f} s", model.path,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  if (model.input_size) {
    loaded->mutable_input_spec().height = *model.input_size;
    loaded->mutable_input_spec().width = *model.input_size;
  }
  return loaded;
}

std::unique_ptr<Probe> MakeProbe(std::shared_ptr<Model> model) {
  const auto started = std::chrono::steady_clock::now();
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(model->path(), ec);
  if (!ec && bytes >= kLargeModelBytes) {
    Log()->info("finding layers: inlining the graph, output shapes at {}x{}, receptive fields",
                model->input_spec().height, model->input_spec().width);
  }
  auto probe = std::make_unique<Probe>(std::move(model));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (seconds > 1.0) Log()->info("found {} layers in {:.1f} s", probe->layers().size(), seconds);
  return probe;
}

std::string DisplayLayer(const Probe& probe, const std::string& name_or_alias) {
  const LayerInfo& layer = probe.Find(name_or_alias);
  return layer.alias.empty() ? layer.name : layer.alias;
}

void AddPrecisionOption(CLI::App& command, Precision& target, const std::string& what) {
  command
      .add_option_function<std::string>(
          "--precision", [&target](const std::string& text) { target = ParsePrecision(text); },
          "fp32 (exact, default), bf16 (CPUs with native bfloat16 -- AVX512-BF16 or AMX -- and CUDA) or fp16 "
          "(CUDA) for " + what)
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
}

}  // namespace cnnviz::app
