// Activation maximization: synthesize the input a unit, channel, class or direction prefers.
// Erhan et al. 2009 (gradient ascent on the input), Simonyan et al. 2013 (class logits), Yosinski et al.
// 2015 (pixel regularizers), Olah et al., "Feature Visualization", Distill 2017 (Fourier + decorrelated
// parameterization, transformation robustness, diversity).
//
// Every requested unit is one batch element; `batch` elements are optimized together, which is what
// makes whole layers cheap. An element's result does not depend on its batch: its initialization is
// seeded by (seed, unit, copy) and the random transforms are shared by the batch. The Probe cuts the
// network after the deepest layer the objective reads.
// Limit: units of layers without spatial extent only support channel (= the unit's value) and class
// objectives.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "cnnviz/model/probe.h"
#include "cnnviz/optvis/objective.h"
#include "cnnviz/optvis/param.h"
#include "cnnviz/optvis/render.h"

namespace cnnviz {

struct ActMaxOptions {
  // Layer (module path or alias) whose units are visualized. Required unless `expression` is set.
  std::string layer;
  // Units of `layer` (or class indices for objective "class"). Empty with a layer = every unit.
  std::vector<int64_t> units;
  // "channel" (mean of the unit's map, default), "neuron" (the unit at the map's centre), "class"
  // (the model's output `unit`; `layer` unused) or "direction" (`direction_file` · channel vector).
  std::string objective = "channel";
  // For objective "direction": a text file of numbers, one per unit of `layer`.
  std::string direction_file;
  // An objective expression (see cnnviz/optvis/objective.h) optimized as one image (times diversity);
  // replaces layer/units/objective when non-empty.
  std::string expression;
  // Images per unit; with more than 1, Olah's diversity penalty on `layer` pushes them apart. Default 1.
  int64_t diversity = 1;
  // Weight of the diversity penalty. Default 1.
  double diversity_weight = 1.0;
  // Batch elements optimized together. Default 16.
  int64_t batch = 16;
  // Image parameterization and size (default fft, decorrelated, 128x128).
  ImageParamOptions param;
  // "standard" (Lucid's) or "none". Default "standard".
  std::string transforms = "standard";
  // Steps, learning rate, Yosinski regularizers.
  RenderOptions render;
  // Elements per network pass within a batch (RenderOptions::chunk): -1 = automatic (4 on a CPU, where
  // small chunks stay in cache -- 3-10% faster than whole batches of 64, measured -- and the whole batch
  // on CUDA), 0 = the whole batch. Results do not depend on it.
  int64_t chunk = -1;
  // Parts of a batch optimized concurrently, each on its own thread with one intra-op thread: 0 =
  // automatic (as many as the process's intra-op threads on a CPU, 1 on CUDA). Results do not depend
  // on it (each part is a batch of its own, and batches do not change results).
  int64_t workers = 0;
  // Cut the network after the deepest layer the objective reads (the Probe's truncation). Default true;
  // false runs the whole network every step (for benchmarks).
  bool truncate = true;
  // Seed for initialization and transforms. Default 0.
  uint64_t seed = 0;
  // Throws UsageError for inconsistent options (checks against the model happen in Run).
  void Check() const;
};

struct UnitImage {
  std::string label;       // "conv5:42", "conv5:42#1" for diversity copies, or the expression
  std::string objective;   // canonical objective text
  std::string layer;       // "" for class / expression objectives
  int64_t unit = -1;
  int64_t copy = 0;        // diversity index
  float initial_value = 0; // objective of the initial image, no transforms
  float final_value = 0;   // objective of the final image, no transforms
  std::vector<float> curve;
};

struct ActMaxResult {
  at::Tensor images;                 // [N,3,H,W] in [0,1], on CPU
  std::vector<UnitImage> units;      // one per image
  std::vector<int64_t> curve_steps;  // steps of UnitImage::curve
  bool resized_to_model = false;     // images were resized to the model's input size before the network
  int64_t workers = 1;               // parts of each batch optimized concurrently
  double seconds = 0;
  // Mean wall time of a step once warm (steps after the first kWarmupSteps of each batch, which include
  // TorchScript's profiling runs), in milliseconds; the whole mean when there are no others.
  double ms_per_step = 0;
  static constexpr int64_t kWarmupSteps = 3;
};

class ActivationMaximization {
 public:
  explicit ActivationMaximization(const Probe& probe) : probe_(probe) {}
  // Called after each step: (batch index, batches, step, steps).
  using Progress = std::function<void(int64_t, int64_t, int64_t, int64_t)>;
  ActMaxResult Run(const ActMaxOptions& options, const Progress& progress = nullptr) const;

 private:
  const Probe& probe_;
};

}  // namespace cnnviz
