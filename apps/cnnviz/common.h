// What every subcommand shares: global flags, logging setup, model loading.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/core/precision.h"
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
// A --layers value: "all" = the sidecar's aliased tappable layers in forward order, or every
// convolution when there are none; "all-conv" = every convolution; otherwise a comma-separated list.
std::vector<std::string> ResolveLayerList(const std::string& text, const Probe& probe);

// The folder a command writes, the one way commands write files. Constructing it claims the folder for
// this run: creates it; takes an exclusive lock on `folder/.cnnviz.lock` held until the process ends
// (InputError when another run holds it); removes temporaries that dead runs left there, and the
// previous run's report.json. Files are written atomically by the io/ writers at paths from File(), which
// creates their folders. Finish writes report.json, last: a folder without one is unfinished.
class OutputFolder {
 public:
  explicit OutputFolder(const std::string& folder);
  // The full path of `relative` ("units/conv3_0007.png"), its parent folders created.
  std::string File(const std::string& relative) const;
  // The full path of the folder `relative`, created.
  std::string Folder(const std::string& relative) const;
  // Writes report.json: the run is finished.
  void Finish(const nlohmann::json& report) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
// The same for one output file (a decoder): the lock is `.<name>.lock` beside it.
void ClaimOutputFile(const std::string& file);

// The name a layer is shown and filed under: its sidecar alias when it has one ("conv5"), otherwise its
// module path ("features.10"), whichever of the two the user typed, so every command names the same
// layer the same way.
std::string DisplayLayer(const Probe& probe, const std::string& name_or_alias);
// Model files from this size on get progress lines while they load and while their layers are found.
constexpr std::uintmax_t kLargeModelBytes = 64u << 20;
// A Probe for `model`, with progress lines on stderr for large models (finding layers runs the model).
std::unique_ptr<Probe> MakeProbe(std::shared_ptr<Model> model);
// Loads the model on the chosen device and applies flag overrides.
std::shared_ptr<Model> LoadModel(const ModelOptions& model, const GlobalOptions& global);

// One input image for a model, from --image: a PNG/JPEG (resized to the model's input size), or a float
// .npy [3,H,W] or [1,3,H,W] at the model's input size, used as given so that results can be compared
// with other tools on the same tensor. `npy_values` says what the .npy holds: "range" = values in the
// sidecar's channel order and range, before mean/std normalization; "normalized" = the model's input
// itself. Throws InputError naming the file and the problem.
struct ModelInput {
  at::Tensor input;  // [1,3,H,W] on the model's device, what the network receives
  at::Tensor image;  // [3,H,W] in RGB [0,1] on the CPU, for figures (clamped)
  at::Tensor raw;    // [3,H,W] RGB in [0,1] units, unclamped (Deprocess of `input`; the image itself for PNG/JPEG)
  bool from_npy = false;
};
ModelInput ReadModelInput(const std::string& path, const Model& model, const std::string& npy_values);

// Adds --npy-values (what a .npy --image holds) to a command.
void AddNpyValuesOption(CLI::App& command, std::string& npy_values);

// --precision fp32|bf16|fp16 into `target` (core/precision.h); `what` says what runs at it and what
// stays float32.
void AddPrecisionOption(CLI::App& command, Precision& target, const std::string& what);

}  // namespace cnnviz::app
