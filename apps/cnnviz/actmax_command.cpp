#include "cnnviz/actmax_command.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>
#include <ATen/Parallel.h>

#include <chrono>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/core/precision.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/image_folder.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/report.h"
#include "cnnviz/options_json.h"
#include "cnnviz/optvis/transform.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"

namespace cnnviz::app {
using nlohmann::json;

namespace {

// Files are named by the layer's alias when it has one (as every command names layers).
std::string ImageStem(const Probe& probe, const UnitImage& unit) {
  if (!unit.layer.empty()) {
    std::string stem = DisplayLayer(probe, unit.layer) + "_" + std::to_string(unit.unit);
    if (unit.copy > 0) stem += "_" + std::to_string(unit.copy);
    return SafeFileName(stem);
  }
  if (unit.unit >= 0) return SafeFileName("class_" + std::to_string(unit.unit) + (unit.copy ? "_" + std::to_string(unit.copy) : ""));
  return "objective" + (unit.copy ? "_" + std::to_string(unit.copy) : std::string());
}

// The largest objective value each unit reaches on real images (model input size, no transforms).
struct TopNatural {
  float value;
  std::string image;
};
std::vector<TopNatural> ReferenceTop(const Probe& probe, const std::vector<UnitImage>& units,
                                     const std::string& folder) {
  const Model& model = probe.model();
  const InputSpec& spec = model.input_spec();
  std::vector<Objective> objectives;
  for (const auto& unit : units) objectives.push_back(ParseObjective(unit.objective));
  bool needs_output = false;
  const std::vector<std::string> layers = LayersOf(objectives, &needs_output);
  ViewSpec view{layers, needs_output};
  view.inference = true;
  std::vector<TopNatural> top(units.size(), TopNatural{-INFINITY, ""});
  const std::vector<std::string> paths = ListImages(folder);
  constexpr size_t kBatch = 16;
  at::NoGradGuard no_grad;
  for (size_t start = 0; start < paths.size(); start += kBatch) {
    std::vector<at::Tensor> images;
    std::vector<std::string> names;
    for (size_t i = start; i < std::min(paths.size(), start + kBatch); ++i) {
      try {
        images.push_back(at::upsample_bilinear2d(ReadImage(paths[i]).unsqueeze(0), {spec.height, spec.width}, false));
        names.push_back(paths[i]);
      } catch (const InputError& e) {
        Log()->warn("skipping {}", e.what());
      }
    }
    if (images.empty()) continue;
    const at::Tensor batch = at::cat(images).to(model.device());
    const ProbeOutput out = probe.Run(view, model.Preprocess(batch));
    for (size_t u = 0; u < units.size(); ++u) {
      const std::vector<Objective> repeated(images.size(), objectives[u]);
      const at::Tensor values = EvaluateObjectives(repeated, batch, layers, out.taps, out.output).to(at::kCPU);
      const int64_t best = values.argmax().item<int64_t>();
      if (values[best].item<float>() > top[u].value) top[u] = {values[best].item<float>(), names[best]};
    }
  }
  return top;
}

// A grid tile's caption: the unit, its final objective, with a reference dataset the ratio to the best
// natural image, and a warning when the objective was not raised.
std::string TileCaption(const Probe& probe, const UnitImage& unit, bool not_raised, const TopNatural* natural) {
  std::string name = unit.label;
  if (!unit.layer.empty()) {
    name = DisplayLayer(probe, unit.layer) + ":" + std::to_string(unit.unit) + (unit.copy ? "#" + std::to_string(unit.copy) : "");
  }
  char value[96];
  std::snprintf(value, sizeof(value), "value %.3g", unit.final_value);
  std::string caption = name + "\n" + value;
  if (natural != nullptr && natural->value > 0) {
    std::snprintf(value, sizeof(value), "\n%.2fx best image", unit.final_value / natural->value);
    caption += value;
  }
  if (not_raised) {
    std::snprintf(value, sizeof(value), "\nNOT RAISED (start %.3g)", unit.initial_value);
    caption += value;
  }
  return caption;
}

}  // namespace

void RunActMax(ActMaxCommandOptions options, const GlobalOptions& global) {
  const auto start = std::chrono::steady_clock::now();
  if (options.units_given) options.method.units = ParseUnits(options.units_text);
  options.method.seed = global.seed;
  options.method.Check();
  std::shared_ptr<Model> model = LoadModel(options.model, global);
  // Workers run whole steps with one intra-op thread each (no OpenMP team to busy-wait), so on a CPU
  // they use every core unless --threads says otherwise: 1.8x the units per minute on 2 cores.
  if (options.method.workers == 0 && global.threads == 0 && model->device().is_cpu()) {
    options.method.workers = UsableCores();
  }
  const std::unique_ptr<Probe> probe_owner = MakeProbe(model);
  Probe& probe = *probe_owner;
  const OutputFolder out(options.out);

  const std::string what = options.method.expression.empty()
                               ? (options.method.objective == "class" ? "classes" : "units")
                               : "images";
  ProgressReporter reporter("actmax" + (options.method.layer.empty() ? "" : " " + options.method.layer),
                            options.method.diversity > 1 ? "images" : what);
  ActivationMaximization method(probe);
  ActMaxResult result = method.Run(options.method, [&](int64_t done, int64_t total, double fraction, int64_t batch,
                                                       int64_t batches) {
    reporter.Update(done, total, fraction, batches > 1 ? "batch " + std::to_string(batch + 1) + "/" + std::to_string(batches) : "");
  });


  std::vector<TopNatural> natural;
  if (!options.reference_dataset.empty()) natural = ReferenceTop(probe, result.units, options.reference_dataset);

  std::vector<std::string> captions, flat;
  json units = json::array();
  for (size_t i = 0; i < result.units.size(); ++i) {
    const UnitImage& unit = result.units[i];
    // A unit whose objective did not rise above its start, or above 0, was not visualized: its image is
    // the starting noise or flat grey, whatever it looks like.
    const bool not_raised = !(unit.final_value > unit.initial_value) || !(unit.final_value > 0);
    if (not_raised) flat.push_back(unit.label);
    const std::string stem = ImageStem(probe, unit);
    WritePng(out.File("units/" + stem + ".png"), result.images[i]);
    json record = {{"label", unit.label},
                   {"layer", unit.layer},
                   {"unit", unit.unit},
                   {"copy", unit.copy},
                   {"objective", unit.objective},
                   {"initial_value", unit.initial_value},
                   {"final_value", unit.final_value},
                   {"not_raised", not_raised},
                   {"curve", unit.curve},
                   {"image", "units/" + stem + ".png"}};
    if (options.method.diversity > 1) record["diversity_term"] = unit.diversity_term;
    if (options.save_arrays) {
      WriteNpy(out.File("arrays/" + stem + ".npy"), result.images[i]);
      record["array"] = "arrays/" + stem + ".npy";
    }
    if (!natural.empty()) {
      record["reference_top"] = {{"value", natural[i].value}, {"image", natural[i].image}};
      record["ratio_to_reference"] = natural[i].value > 0 ? json(unit.final_value / natural[i].value) : json(nullptr);
    }
    units.push_back(record);
    captions.push_back(TileCaption(probe, unit, not_raised, natural.empty() ? nullptr : &natural[i]));
  }
  WritePng(out.File("grid.png"), MakeGrid(result.images, captions));
  if (!flat.empty()) {
    std::string names;
    for (size_t i = 0; i < flat.size() && i < 12; ++i) names += (i ? ", " : "") + flat[i];
    if (flat.size() > 12) names += ", ...";
    Log()->warn("{} unit(s) ended with an objective not above their start or not above 0, so their images show "
                "nothing they prefer (flagged not_raised in report.json): {}",
                flat.size(), names);
  }

  json report = ReportHeader("actmax", *model, global.seed);
  report["options"] = ToJson(options);
  report["resized_to_model_input"] = result.resized_to_model;
  report["units_not_raised"] = flat;
  report["selected_channels"] = result.selected_channels;
  report["precision"] = {{"network", ToString(options.method.precision)},
                         {"cpu_bf16", CpuBf16Flag()},
                         {"exact", "image parameters, Adam state, transforms and objectives in float32; initial and "
                                   "final values evaluated with the float32 network"}};
  report["curve_steps"] = result.curve_steps;
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // units_per_minute counts everything the method does (setup, every step, final evaluation).
  report["timings"] = {{"optimize_seconds", result.seconds},
                       {"total_seconds", total},
                       {"ms_per_step", result.ms_per_step},
                       {"ms_per_step_note", "one step of a whole batch: its parts' mean step times after their first 3, summed, over the workers that ran them"},
                       {"units_per_minute", 60.0 * static_cast<double>(result.units.size()) / result.seconds},
                       {"workers", result.workers},
                       {"intra_op_threads", at::get_num_threads()}};
  report["units"] = units;
  out.Finish(report);
  Log()->info("wrote {} image(s) to {} in {:.1f} s", result.units.size(), options.out, total);
}

std::function<void()> AddActMaxCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<ActMaxCommandOptions>();
  ActMaxOptions& m = options->method;
  CLI::App* command = app.add_subcommand(
      "actmax", "Activation maximization: synthesize the image a unit, channel, class or direction prefers");
  AddModelOptions(*command, options->model);
  command->add_option("-l,--layer", m.layer, "Layer to visualize (module path or alias; see `cnnviz layers`)");
  command->add_option("-u,--unit,--units", options->units_text,
                      "Unit(s): 42, 0-63, 1,5,9 or all (default all); class indices for --objective class");
  command->add_option("--objective", m.objective, "channel (map mean), neuron (map centre), class (logit) or direction")
      ->check(CLI::IsMember({"channel", "neuron", "class", "direction"}))
      ->capture_default_str();
  command->add_option("--direction", m.direction_file, "For --objective direction: text file, one number per unit");
  command->add_option("--expr", m.expression,
                      "Objective expression: weighted terms joined by + and -, e.g. \"conv5:42 + 0.5*conv4:7 - 0.05*tv\" "
                      "(replaces --layer/--units). Terms:\n" + ObjectiveHelp());
  command->add_option("--steps", m.render.steps, "Optimization steps")->capture_default_str();
  command->add_option("--lr", m.render.learning_rate, "Adam learning rate")->capture_default_str();
  command->add_option("--size", m.param.height, "Image side in pixels")->capture_default_str();
  command->add_option("--batch", m.batch, "Images optimized together (whole layers go fastest batched)")
      ->capture_default_str();
  command->add_option("--part", m.part,
                      "Images per part: a batch is optimized as parts of this size (-1 auto: 4 on CPU, the "
                      "whole batch on CUDA; 0 whole batch); results do not change")
      ->capture_default_str();
  command->add_option("--workers", m.workers,
                      "Threads optimizing a batch's parts concurrently, one intra-op thread each: 0 auto "
                      "(on CPU --threads if given, else every core; 1 on CUDA); results do not change")
      ->capture_default_str();
  command->add_option("--diversity", m.diversity, "Images per unit, pushed apart by Olah's diversity term")
      ->capture_default_str();
  command->add_option("--diversity-weight", m.diversity_weight, "Weight of the diversity term relative to each copy's objective (copies below half the best are not pushed; report.json gives final_value without it and diversity_term)")->capture_default_str();
  command->add_option("--param", m.param.kind, "Image parameterization: fft (1/f Fourier) or pixel")
      ->check(CLI::IsMember({"fft", "pixel"}))
      ->capture_default_str();
  command->add_flag("--decorrelate,!--no-decorrelate", m.param.decorrelate,
                    "Lucid's decorrelated colour space (default on)");
  command->add_option("--transforms", m.transforms,
                      "Transformation robustness: a preset, or kinds joined by commas and applied in order "
                      "(e.g. pad:12,jitter:8,scale:0.9-1.1,rotate:10,jitter:4):" + TransformsHelp())
      ->capture_default_str();
  command->add_option("--decay", m.render.decay, "Yosinski L2 decay per step (pixel param)")->capture_default_str();
  command->add_option("--blur-every", m.render.blur_every, "Yosinski Gaussian blur every N steps (pixel param; 0 = off)")
      ->capture_default_str();
  command->add_option("--blur-sigma", m.render.blur_sigma, "Sigma of that blur")->capture_default_str();
  command->add_option("--clip-percentile", m.render.clip_percentile,
                      "Yosinski: zero pixels whose norm is below this percentile (pixel param; 0 = off)")
      ->capture_default_str();
  command->add_flag("!--no-truncation", m.truncate,
                    "Run the whole network every step instead of cutting it after the layer (benchmarks)");
  command->add_flag("!--whole-layer", m.select_channels,
                    "Compute every channel of the layer each step; by default a CPU computes only each image's\n"
                    "own channel where the layer is a convolution (+ ReLU) (benchmarks)");
  command->add_option("--relu-redirect-steps", m.relu_redirect_steps,
                      "For this many first steps ReLUs pass Lucid's redirected gradient, so that a unit silent on "
                      "the starting image still gets one (0 = off)")
      ->capture_default_str();
  AddPrecisionOption(*command, m.precision,
                     "the network during optimization steps; the image, Adam's state and the objective stay "
                     "float32, and the reported values are evaluated in float32");
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->add_flag("--save-arrays", options->save_arrays, "Also write each image as float32 .npy [3,H,W]");
  command->add_option("--reference-dataset", options->reference_dataset,
                      "Image folder: report each unit's top activation on real images beside the synthetic one");
  command->footer(
      "Outputs in --out: grid.png (all images, labelled), units/<layer>_<unit>.png, report.json (options,\n"
      "per-unit final objective and curve, timings), arrays/*.npy with --save-arrays.\n"
      "Examples:\n"
      "  cnnviz actmax --model models/tinycnn.pt --layer conv5 --unit 42\n"
      "  cnnviz actmax --model models/tinycnn.pt --layer conv3 --units all --batch 64 --steps 256\n"
      "  cnnviz actmax --model alexnet.pt --objective class --unit 130 --size 224\n"
      "  cnnviz actmax --model models/tinycnn.pt --expr \"conv5:3 + 0.5*conv4:7 - 0.05*tv\"");
  return [options, &global, command]() {
    if (!command->parsed()) return;
    options->units_given = command->count("--units") > 0;
    options->method.param.width = options->method.param.height;
    RunActMax(*options, global);
  };
}

}  // namespace cnnviz::app
