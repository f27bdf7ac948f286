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

#include "cnnviz/core/precision.h"
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
  // For programs (the atlas's cells): one image per objective (times `diversity`), in place of
  // objective/units/expression; UnitImage::unit is the objective's index. `layer`, when set, is the
  // layer the diversity term reads.
  std::vector<Objective> objectives;
  // Images per unit; with more than 1, Olah's diversity penalty on `layer` pushes them apart. Default 1.
  int64_t diversity = 1;
  // Weight of the diversity penalty, relative to the objective: each copy maximizes objective −
  // weight · objective · penalty (the objective's factor not differentiated; penalty = mean cosine
  // similarity of its Gram matrix to the other copies', in [0, 1] for ReLU layers), with the penalty off
  // for a copy below half of its group's best objective. Default 4: on the bundled model's conv4:7 (4
  // copies) weights 1, 2, 4, 8 left mean similarities 0.996, 0.65, 0.53, 0.44 and the weakest copy at
  // 0.94, 0.52, 0.36, 0.39 of the best.
  double diversity_weight = 4.0;
  // Batch elements optimized together. Default 16.
  int64_t batch = 16;
  // Image parameterization and size (default fft, decorrelated, 128x128).
  ImageParamOptions param;
  // "standard" (Lucid's) or "none". Default "standard".
  std::string transforms = "standard";
  // Steps, learning rate, Yosinski regularizers.
  RenderOptions render;
  // Batch elements per part: a batch is optimized as parts, each a batch of its own (its own
  // parameterization, the transforms every batch gets), rounded up to whole diversity groups. -1 =
  // automatic: 4 on a CPU, where small parts stay in cache (tinycnn 1.14x, resnet18 1.04x the units per
  // minute of one part of 64, measured), the whole batch on CUDA; 0 = the whole batch. Results do not
  // depend on it.
  int64_t part = -1;
  // Threads that optimize the parts of a batch concurrently, each with one intra-op thread: 0 =
  // automatic (as many as the process's intra-op threads on a CPU, 1 on CUDA). Results do not depend
  // on it.
  int64_t workers = 0;
  // Cut the network after the deepest layer the objective reads (the Probe's truncation). Default true;
  // false runs the whole network every step (for benchmarks).
  bool truncate = true;
  // On a CPU, where every objective reads one channel (or neuron) of the same layer and that layer is a
  // convolution followed by nothing or ReLUs, compute only each image's own channel of it
  // (ViewSpec::select_channels). Default true; false computes the whole layer (for benchmarks). Results
  // agree to float rounding.
  bool select_channels = true;
  // For this many first steps the network's ReLUs pass Lucid's redirected gradient
  // (BackwardRule::kRedirected): a unit silent on the starting image would otherwise get no gradient
  // and stay a flat grey image. Default 16, Lucid's; 0 turns it off. Those steps run the whole layer
  // (select_channels applies after them).
  int64_t relu_redirect_steps = 16;
  // Seed for initialization and transforms. Default 0.
  uint64_t seed = 0;
  // The network's forward pass during optimization steps, at this precision (autocast;
  // core/precision.h); its backward follows. The image parameters, Adam's state, transforms, objectives
  // and the diversity penalty stay float32 (the taps are cast back before the objective reads them), and
  // the initial and final values are evaluated in float32, so they compare across precisions.
  Precision precision = Precision::kFp32;
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
  float final_value = 0;   // objective of the final image, no transforms (without the diversity term)
  // With diversity: the final image's diversity penalty, the mean cosine similarity of its layer's Gram
  // matrix to its copies' (0 = unlike them, 1 = alike); optimized as weight · |group's mean objective| ·
  // this, subtracted from the objective.
  float diversity_term = 0;
  std::vector<float> curve;
};

struct ActMaxResult {
  at::Tensor images;                 // [N,3,H,W] in [0,1], on CPU
  std::vector<UnitImage> units;      // one per image
  std::vector<int64_t> curve_steps;  // steps of UnitImage::curve
  bool resized_to_model = false;     // images were resized to the model's input size before the network
  bool selected_channels = false;    // each image's own channel alone was computed (select_channels)
  int64_t workers = 1;               // threads that optimized the parts of each batch
  double seconds = 0;
  // Mean wall time of one step of a whole batch once warm, in milliseconds: each part's mean step time
  // (steps after its first kWarmupSteps, which include TorchScript's profiling runs), summed over the
  // batch's parts and divided by the workers that ran them concurrently.
  double ms_per_step = 0;
  static constexpr int64_t kWarmupSteps = 3;
};

class ActivationMaximization {
 public:
  explicit ActivationMaximization(const Probe& probe) : probe_(probe) {}
  // Called after each step (from worker threads, one at a time): images finished, images in all (units
  // times diversity), the fraction of all optimization steps done, batch index, batches.
  using Progress = std::function<void(int64_t done, int64_t total, double fraction, int64_t batch, int64_t batches)>;
  ActMaxResult Run(const ActMaxOptions& options, const Progress& progress = nullptr) const;

 private:
  const Probe& probe_;
};

}  // namespace cnnviz
