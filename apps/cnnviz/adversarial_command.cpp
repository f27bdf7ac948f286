#include "cnnviz/adversarial_command.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/data/image_source.h"
#include "cnnviz/io/crop.h"
#include "cnnviz/io/figures.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/io/report.h"
#include "cnnviz/methods/deconvnet.h"
#include "cnnviz/methods/network_inversion.h"
#include "cnnviz/options_json.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"
#include "cnnviz/viewer.h"

namespace cnnviz::app {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double ParseFraction(const std::string& text, const std::string& flag) {
  const auto number = [&](const std::string& part) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || !std::isfinite(value)) {
      throw UsageError(flag + " takes a number or a fraction such as 8/255, not '" + text + "'");
    }
    return value;
  };
  const size_t slash = text.find('/');
  if (slash == std::string::npos) return number(text);
  const double denominator = number(text.substr(slash + 1));
  if (denominator == 0) throw UsageError(flag + " '" + text + "' divides by zero");
  return number(text.substr(0, slash)) / denominator;
}

namespace {

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// {"mean", "std" (population), "min", "max"}; nulls for no values.
json Spread(const std::vector<double>& values) {
  if (values.empty()) return {{"mean", nullptr}, {"std", nullptr}, {"min", nullptr}, {"max", nullptr}};
  const double n = static_cast<double>(values.size());
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return {{"mean", mean},
          {"std", std::sqrt(squares / n)},
          {"min", *std::min_element(values.begin(), values.end())},
          {"max", *std::max_element(values.begin(), values.end())}};
}

json ClassName(const std::vector<std::string>& names, int64_t k) {
  return k >= 0 && k < static_cast<int64_t>(names.size()) ? json(names[k]) : json(nullptr);
}

std::string ClassText(const std::vector<std::string>& names, int64_t k) {
  const json name = ClassName(names, k);
  return name.is_null() ? "class " + std::to_string(k) : name.get<std::string>() + " (" + std::to_string(k) + ")";
}

// The k most probable classes of one image's logits [C].
json TopClasses(const at::Tensor& logits, const std::vector<std::string>& names, int64_t k) {
  const at::Tensor row = logits.to(at::kDouble);
  const at::Tensor probabilities = row.softmax(0);
  const auto [values, indices] = probabilities.topk(std::min<int64_t>(k, row.size(0)));
  json out = json::array();
  for (int64_t i = 0; i < values.size(0); ++i) {
    const int64_t c = indices[i].item<int64_t>();
    out.push_back({{"class", c}, {"name", ClassName(names, c)}, {"probability", values[i].item<double>()},
                   {"logit", row[c].item<double>()}});
  }
  return out;
}

// Every unit's strongest response per image: [B, C] (double, CPU) from a tap [B, C, ...].
at::Tensor UnitMaxima(const at::Tensor& tap) {
  const at::Tensor flat = tap.detach().flatten(2 < tap.dim() ? 2 : 1);
  return (tap.dim() > 2 ? flat.amax(2) : flat).to(at::kCPU, at::kDouble);
}

// Images at least 160 pixels on their longer side (integer nearest-neighbour scaling keeps the
// perturbation's pixels sharp).
at::Tensor Enlarge(const at::Tensor& image) {
  const int64_t side = std::max(image.size(1), image.size(2));
  const int64_t factor = std::max<int64_t>(1, (160 + side - 1) / side);
  if (factor == 1) return image;
  return at::upsample_nearest2d(image.unsqueeze(0), {image.size(1) * factor, image.size(2) * factor})[0];
}

std::string Percent(double p) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f%%", 100 * p);
  return text;
}

std::string Number(double v, const char* format = "%.3g") {
  char text[48];
  std::snprintf(text, sizeof(text), format, v);
  return text;
}

// The concept labels of a `cnnviz dissect` output for this model: layer module path -> unit records.
struct DissectionLabels {
  std::string path;
  std::map<std::string, std::vector<json>> units;
};

DissectionLabels ReadDissection(const std::string& folder, const Probe& probe, const Model& model,
                                std::vector<std::string>& warnings) {
  DissectionLabels labels;
  if (folder.empty()) return labels;
  labels.path = folder;
  const fs::path file = fs::path(folder) / "report.json";
  std::ifstream in(file);
  if (!in) throw InputError("--dissection '" + folder + "' has no report.json (a finished `cnnviz dissect` output)");
  json report;
  try {
    report = json::parse(in);
  } catch (const json::exception& e) {
    throw InputError("--dissection: " + file.string() + " is not valid JSON (" + FirstLine(e.what()) + ")");
  }
  if (!report.is_object() || report.value("command", "") != "dissect" || !report.contains("layers") ||
      !report["layers"].is_array()) {
    throw InputError("--dissection: " + file.string() + " is not a `cnnviz dissect` report");
  }
  const std::string theirs = report.contains("model") && report["model"].is_object() ? report["model"].value("path", "") : "";
  if (fs::path(theirs).filename() != fs::path(model.path()).filename()) {
    warnings.push_back("--dissection was made with model '" + theirs + "', not '" + model.path() +
                       "': its labels describe the units of that model");
  }
  for (const json& layer : report["layers"]) {
    if (!layer.is_object() || !layer.contains("name") || !layer["name"].is_string() || !layer.contains("units")) {
      throw InputError("--dissection: " + file.string() + " has a layer without a name or units");
    }
    const std::string name = layer["name"].get<std::string>();
    const LayerInfo* info = nullptr;
    try {
      info = &probe.Find(name);
    } catch (const Error&) {
      warnings.push_back("--dissection: layer '" + name + "' is not in this model; its labels are not used");
      continue;
    }
    std::vector<json>& units = labels.units[info->name];
    units.assign(static_cast<size_t>(info->units), json(nullptr));
    for (const json& unit : layer["units"]) {
      const int64_t k = unit.value("unit", int64_t{-1});
      if (k < 0 || k >= info->units) {
        throw InputError("--dissection: layer '" + name + "' has unit " + std::to_string(k) + ", but this model's has " +
                         std::to_string(info->units) + " units: the dissection is of another model");
      }
      units[static_cast<size_t>(k)] = unit;
    }
  }
  return labels;
}

// The layers of `candidates` with spatial maps and channels on axis 1, deepest last.
std::vector<std::string> SpatialLayers(const Probe& probe, const std::vector<std::string>& candidates) {
  std::vector<std::string> out;
  for (const std::string& name : candidates) {
    const LayerInfo& info = probe.Find(name);
    if (info.shape.size() == 4 && info.channel_axis == 1) out.push_back(info.name);
  }
  return out;
}

// "none" -> {}; "auto" -> `pick` of the candidates; otherwise the list, each checked.
std::vector<std::string> ChooseLayers(const std::string& text, const std::vector<std::string>& automatic,
                                      const Probe& probe, const std::string& flag) {
  if (text == "none") return {};
  if (text != "auto") {
    std::vector<std::string> out;
    for (const std::string& name : SplitList(text)) out.push_back(probe.FindUnits(name).name);
    if (out.empty()) throw UsageError(flag + " is empty (use none to skip)");
    return out;
  }
  return automatic;
}

// Per image of the run: what the pages and the summary need.
struct ImageRecord {
  json record;
  double linf = 0, l2 = 0, input_relative_l2 = 0;
  bool success = false;
};

}  // namespace

void RunAdversarial(AdversarialCommandOptions options, const GlobalOptions& global) {
  const auto start = Clock::now();
  AttackOptions& a = options.attack;
  const bool given = !options.adversarial_image.empty();
  if (options.image.empty() == options.images.empty()) throw UsageError("give exactly one of --image FILE and --images DIR");
  if (given && options.image.empty()) {
    throw UsageError("--adversarial-image needs --image, the clean image it was made from");
  }
  a.norm = options.norm == "l2" ? AttackNorm::kL2 : AttackNorm::kLinf;
  a.epsilon = ParseFraction(options.epsilon_text, "--epsilon");
  a.step_size = options.step_size_text == "auto" ? 0.0 : ParseFraction(options.step_size_text, "--step-size");
  a.random_start = !options.no_random_start;
  a.seed = global.seed;
  if (!given) a.Check();
  if (options.batch < 1) throw UsageError("--batch must be at least 1");
  if (options.changed_units < 0) throw UsageError("--changed-units must be >= 0");
  if (options.inversion_steps < 1) throw UsageError("--inversion-steps must be at least 1");
  if (options.workers < 1) throw UsageError("--workers must be at least 1");
  const BackwardRule rule = ParseBackwardRule(options.rule);

  std::shared_ptr<Model> model = LoadModel(options.model, global);
  const std::unique_ptr<Probe> probe_owner = MakeProbe(model);
  const Probe& probe = *probe_owner;
  const InputSpec& spec = model->input_spec();
  const std::vector<std::string>& names = spec.labels;

  // The class output, checked before anything is written.
  int64_t classes = 0;
  {
    at::NoGradGuard no_grad;
    const at::Tensor logits =
        probe.Run(ViewSpec{{}, true}, model->Preprocess(at::full({1, 3, spec.height, spec.width}, 0.5, at::kFloat).to(model->device())))
            .output;
    if (!logits.defined() || logits.dim() != 2 || logits.size(1) < 2) {
      throw UsageError("the model has no class output (logits [N, C]): an attack needs classes to move between");
    }
    classes = logits.size(1);
  }
  if (a.target >= classes) {
    throw UsageError("--target " + std::to_string(a.target) + " is out of range (the model has " + std::to_string(classes) +
                     " classes: 0-" + std::to_string(classes - 1) + ")");
  }
  const bool targeted = a.target >= 0;

  // Where divergences are measured, whose units are listed, where inversions are made.
  std::vector<std::string> layers;
  for (const std::string& name : ResolveLayerList(options.layers_text, probe)) {
    const LayerInfo& info = probe.Find(name);
    if (!info.tappable) throw UsageError("--layers: '" + name + "' cannot be tapped (" + info.note + ")");
    if (std::find(layers.begin(), layers.end(), info.name) == layers.end()) layers.push_back(info.name);
  }
  if (layers.empty()) throw UsageError("--layers is empty");
  const std::vector<std::string> spatial = SpatialLayers(probe, layers);
  std::vector<std::string> automatic_inspect, automatic_inversion;
  if (!spatial.empty()) {
    if (spatial.size() > 2) automatic_inspect.push_back(spatial[spatial.size() / 2]);
    automatic_inspect.push_back(spatial.back());
    automatic_inversion.push_back(spatial.front());
    if (spatial.size() > 2) automatic_inversion.push_back(spatial[spatial.size() / 2]);
    if (spatial.size() > 1) automatic_inversion.push_back(spatial.back());
  }
  const std::vector<std::string> inspect = options.changed_units == 0
                                               ? std::vector<std::string>{}
                                               : ChooseLayers(options.inspect_text, automatic_inspect, probe, "--inspect");
  const std::vector<std::string> inversion_layers =
      ChooseLayers(options.inversion_layers_text, automatic_inversion, probe, "--inversion-layers");
  // One forward pass gives both the divergences and the unit maxima.
  std::vector<std::string> taps = layers;
  for (const std::string& name : inspect) {
    if (std::find(taps.begin(), taps.end(), name) == taps.end()) taps.push_back(name);
  }
  std::vector<std::string> warnings;
  const DissectionLabels dissection = ReadDissection(options.dissection, probe, *model, warnings);

  // Inputs, read before the output folder is claimed: a bad file leaves nothing behind.
  ModelInput single, perturbed;
  std::unique_ptr<ImageSource> source;
  if (!options.image.empty()) {
    single = ReadModelInput(options.image, *model, options.npy_values);
    if (given) perturbed = ReadModelInput(options.adversarial_image, *model, options.npy_values);
  } else {
    source = OpenImageDataset(options.images);
  }
  const OutputFolder out(options.out);

  // Per-image results, and the sums the folder's summary needs.
  std::vector<ImageRecord> records;
  std::vector<std::vector<double>> relative(layers.size()), cosine(layers.size());
  std::vector<at::Tensor> clean_sum(inspect.size()), adversarial_sum(inspect.size());
  json skipped = json::array();
  at::Tensor example_clean, example_adversarial;  // [3,H,W] in [0, 1]
  int64_t example = -1;
  double attack_seconds = 0, divergence_seconds = 0;
  std::vector<double> batch_attack_seconds;  // the first also pays one-time costs (see docs/adversarial.md)
  const ViewSpec view{taps, false};
  DeconvOptions project;
  project.rule = rule;

  // Attacks (or takes) one batch [B,3,H,W] in [0, 1] and records everything per image.
  const auto process = [&](const at::Tensor& clean, const at::Tensor& given_adversarial,
                           const std::vector<std::string>& image_names) {
    const auto attack_start = Clock::now();
    AttackResult result;
    if (given_adversarial.defined()) {
      at::NoGradGuard no_grad;
      const ViewSpec output{{}, true};
      result.adversarial = given_adversarial.clamp(0, 1);
      result.clean_logits = probe.Run(output, model->Preprocess(clean.to(model->device()))).output.cpu();
      result.adversarial_logits = probe.Run(output, model->Preprocess(result.adversarial.to(model->device()))).output.cpu();
      const at::Tensor before = result.clean_logits.argmax(1), after = result.adversarial_logits.argmax(1);
      result.success = targeted ? after == a.target : after != before;
    } else {
      result = AdversarialAttack(probe).Run(clean, at::Tensor(), a);
    }
    batch_attack_seconds.push_back(Seconds(attack_start));
    attack_seconds += batch_attack_seconds.back();
    const auto divergence_start = Clock::now();
    ProbeOutput clean_taps, adversarial_taps;
    at::Tensor clean_input, adversarial_input;
    {
      at::NoGradGuard no_grad;
      clean_input = model->Preprocess(clean.to(model->device()));
      adversarial_input = model->Preprocess(result.adversarial.to(model->device()));
      clean_taps = probe.Run(view, clean_input);
      adversarial_taps = probe.Run(view, adversarial_input);
    }
    std::vector<LayerDivergence> divergences;
    for (size_t l = 0; l < layers.size(); ++l) divergences.push_back(Divergence(layers[l], clean_taps.taps[l], adversarial_taps.taps[l]));
    for (size_t i = 0; i < inspect.size(); ++i) {
      const size_t t = static_cast<size_t>(std::find(taps.begin(), taps.end(), inspect[i]) - taps.begin());
      const at::Tensor before = UnitMaxima(clean_taps.taps[t]).sum(0), after = UnitMaxima(adversarial_taps.taps[t]).sum(0);
      clean_sum[i] = clean_sum[i].defined() ? clean_sum[i] + before : before;
      adversarial_sum[i] = adversarial_sum[i].defined() ? adversarial_sum[i] + after : after;
    }
    const LayerDivergence input_change = Divergence("input", clean_input, adversarial_input);
    divergence_seconds += Seconds(divergence_start);
    const at::Tensor delta = result.adversarial - clean.cpu();
    for (int64_t b = 0; b < clean.size(0); ++b) {
      ImageRecord r;
      const int64_t index = static_cast<int64_t>(records.size());
      const at::Tensor d = delta[b];
      r.linf = d.abs().max().item<double>();
      r.l2 = d.norm().item<double>();
      r.input_relative_l2 = input_change.relative_l2[b].item<double>();
      r.success = result.success[b].item<bool>();
      const int64_t before = result.clean_logits[b].argmax().item<int64_t>();
      const int64_t after = result.adversarial_logits[b].argmax().item<int64_t>();
      char stem[32];
      std::snprintf(stem, sizeof(stem), "images/%04lld", static_cast<long long>(index));
      const std::string base(stem);
      const double gain = r.linf > 0 ? 0.5 / r.linf : 0.0;
      const at::Tensor clean_image = clean[b].cpu(), adversarial_image = result.adversarial[b];
      const at::Tensor shown_delta = (d * gain + 0.5).clamp(0, 1);
      WritePng(out.File(base + "_clean.png"), clean_image);
      WritePng(out.File(base + "_adversarial.png"), adversarial_image);
      WritePng(out.File(base + "_perturbation.png"), shown_delta);
      const json clean_top = TopClasses(result.clean_logits[b], names, 5);
      const json adversarial_top = TopClasses(result.adversarial_logits[b], names, 5);
      const auto top_lines = [&](const json& top) {
        std::string text;
        for (const json& entry : top) {
          text += "\n" + (entry["name"].is_null() ? "class " + std::to_string(entry["class"].get<int64_t>())
                                                  : entry["name"].get<std::string>()) +
                  " " + Percent(entry["probability"].get<double>());
        }
        return text;
      };
      const std::vector<std::string> captions = {
          "clean" + top_lines(clean_top), "adversarial" + top_lines(adversarial_top),
          "perturbation x" + Number(gain, "%.1f") + "\nL-inf " + Number(r.linf, "%.4f") + " (" + Number(r.linf * 255, "%.1f") +
              "/255)\nL2 " + Number(r.l2, "%.3f") + "\ninput rel. L2 " + Number(r.input_relative_l2, "%.3f")};
      const std::string outcome = r.success ? (targeted ? "reached the target" : "prediction changed")
                                            : (targeted ? "target not reached" : "prediction unchanged");
      WritePng(out.File(base + ".png"),
               AddHeading(MakeGrid(at::stack({Enlarge(clean_image), Enlarge(adversarial_image), Enlarge(shown_delta)}), captions, 3),
                          fs::path(image_names[b]).filename().string() + ": " + ClassText(names, before) + " -> " +
                              ClassText(names, after) + " (" + outcome + ")"));
      json per_layer_relative = json::array(), per_layer_cosine = json::array();
      for (size_t l = 0; l < layers.size(); ++l) {
        const double rel = divergences[l].relative_l2[b].item<double>(), cos = divergences[l].cosine[b].item<double>();
        relative[l].push_back(rel);
        cosine[l].push_back(cos);
        per_layer_relative.push_back(rel);
        per_layer_cosine.push_back(cos);
      }
      if (r.linf == 0) warnings.push_back("image " + std::to_string(index) + " (" + image_names[b] + "): the perturbation is zero");
      r.record = {{"index", index},
                  {"name", image_names[b]},
                  {"figure", base + ".png"},
                  {"clean", base + "_clean.png"},
                  {"adversarial", base + "_adversarial.png"},
                  {"perturbation", base + "_perturbation.png"},
                  {"perturbation_gain", gain},
                  {"linf", r.linf},
                  {"l2", r.l2},
                  {"input_relative_l2", r.input_relative_l2},
                  {"clean_class", before},
                  {"adversarial_class", after},
                  {"success", r.success},
                  {"clean_top5", clean_top},
                  {"adversarial_top5", adversarial_top},
                  {"relative_l2", per_layer_relative},
                  {"cosine", per_layer_cosine}};
      // The example for projections and inversions: the first image the attack moved (else the first).
      if (example < 0 || (r.success && !records[static_cast<size_t>(example)].success)) {
        example = index;
        example_clean = clean_image;
        example_adversarial = adversarial_image;
      }
      records.push_back(std::move(r));
    }
  };

  if (source) {
    ProgressReporter reporter("adversarial", "images");
    const size_t total = options.max_images ? std::min(options.max_images, source->size()) : source->size();
    BatchPrefetcher batches(*source, static_cast<size_t>(options.batch), spec.height, spec.width, options.max_images,
                            static_cast<size_t>(options.workers));
    ImageBatch batch;
    size_t seen = 0;
    while (batches.Next(&batch)) {
      for (const auto& [index, reason] : batch.failures) {
        Log()->warn("skipped {}", reason);
        skipped.push_back({{"image", source->Name(index)}, {"reason", reason}});
      }
      seen += batch.indices.size() + batch.failures.size();
      if (batch.images.defined()) {
        std::vector<std::string> image_names;
        for (size_t index : batch.indices) image_names.push_back(source->Name(index));
        process(batch.images, at::Tensor(), image_names);
      }
      reporter.Update(static_cast<int64_t>(seen), static_cast<int64_t>(total));
    }
    if (!skipped.empty()) warnings.push_back(std::to_string(skipped.size()) + " image(s) could not be decoded and were skipped");
    if (records.empty()) throw InputError("--images '" + options.images + "': no image could be decoded");
  } else {
    process(single.image.unsqueeze(0), given ? perturbed.image.unsqueeze(0) : at::Tensor(), {options.image});
  }
  const size_t count = records.size();
  int64_t successes = 0;
  std::vector<double> linf, l2, input_relative;
  json image_records = json::array();
  for (const ImageRecord& r : records) {
    successes += r.success ? 1 : 0;
    linf.push_back(r.linf);
    l2.push_back(r.l2);
    input_relative.push_back(r.input_relative_l2);
    image_records.push_back(r.record);
  }
  if (successes == 0 && !given) {
    warnings.push_back("the attack " + std::string(targeted ? "reached its target on" : "changed the prediction of") +
                       " no image at epsilon " + options.epsilon_text + ": the divergences show a failed attack (raise --epsilon or --steps)");
  }

  // Where the attack takes hold.
  std::vector<std::string> shown;
  json layer_records = json::array();
  Series relative_mean{"relative L2, mean over " + std::to_string(count) + " image(s)", {}, 0};
  Series relative_high{"mean + 1 std", {}, 2}, relative_low{"mean - 1 std", {}, 2};
  Series cosine_mean{"cosine similarity, mean over " + std::to_string(count) + " image(s)", {}, 1};
  Series reference{"perturbation at the input (relative L2 " + Number(Spread(input_relative)["mean"].get<double>()) + ")", {}, 3};
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerInfo& info = probe.Find(layers[l]);
    shown.push_back(DisplayLayer(probe, layers[l]));
    const json rel = Spread(relative[l]), cos = Spread(cosine[l]);
    std::vector<int64_t> shape(info.shape.begin() + (info.shape.empty() ? 0 : 1), info.shape.end());
    layer_records.push_back({{"name", info.name}, {"display", shown.back()}, {"shape", shape}, {"relative_l2", rel}, {"cosine", cos}});
    relative_mean.values.push_back(rel["mean"].get<double>());
    relative_high.values.push_back(rel["mean"].get<double>() + rel["std"].get<double>());
    relative_low.values.push_back(rel["mean"].get<double>() - rel["std"].get<double>());
    cosine_mean.values.push_back(cos["mean"].get<double>());
    reference.values.push_back(Spread(input_relative)["mean"].get<double>());
  }
  std::vector<Series> relative_series = {relative_mean, reference};
  if (count > 1) relative_series = {relative_mean, relative_high, relative_low, reference};
  const at::Tensor relative_chart = LineChart("Where the attack takes hold: ||a' - a|| / ||a|| per layer (a = clean, a' = adversarial activations)",
                                              shown, relative_series, "relative L2");
  const at::Tensor cosine_chart = LineChart("Cosine similarity of clean and adversarial activations per layer", shown,
                                            {cosine_mean}, "cosine");
  const int64_t chart_width = std::max(relative_chart.size(2), cosine_chart.size(2));
  const auto pad = [&](const at::Tensor& chart) { return at::constant_pad_nd(chart, {0, chart_width - chart.size(2)}, 1.0); };
  WritePng(out.File("divergence.png"), at::cat({pad(relative_chart), pad(cosine_chart)}, 1));

  // What changed: the units whose maximum rose or fell most, their labels, their projections on the
  // example image.
  const auto changes_start = Clock::now();
  json changes = json::array(), changes_figures = json::object();
  for (size_t i = 0; i < inspect.size(); ++i) {
    const LayerInfo& info = probe.Find(inspect[i]);
    const std::string display = DisplayLayer(probe, inspect[i]);
    const at::Tensor before = clean_sum[i] / static_cast<double>(count), after = adversarial_sum[i] / static_cast<double>(count);
    const at::Tensor change = after - before;
    const int64_t per_side = std::min<int64_t>(options.changed_units, std::max<int64_t>(1, change.size(0) / 2));
    const at::Tensor order = change.argsort(0, /*descending=*/true);
    std::vector<int64_t> rose, fell;
    for (int64_t k = 0; k < per_side; ++k) {
      rose.push_back(order[k].item<int64_t>());
      fell.push_back(order[order.size(0) - 1 - k].item<int64_t>());
    }
    std::vector<int64_t> listed = rose;
    listed.insert(listed.end(), fell.begin(), fell.end());
    // Projections on the example image, cropped to each unit's receptive field at its maximum.
    project.layers = {info.name};
    project.seed_from = info.shape.size() == 4 ? "max" : "position";
    DeconvNet deconv(probe);
    at::Tensor clean_input, adversarial_input;
    {
      at::NoGradGuard no_grad;
      clean_input = model->Preprocess(example_clean.unsqueeze(0).to(model->device()));
      adversarial_input = model->Preprocess(example_adversarial.unsqueeze(0).to(model->device()));
    }
    const std::vector<UnitTop> clean_units = deconv.ImageUnits(clean_input, info.name, listed, 0);
    const std::vector<UnitTop> adversarial_units = deconv.ImageUnits(adversarial_input, info.name, listed, 0);
    const std::vector<at::Tensor> clean_projections = deconv.ProjectInput(clean_input, clean_units, project);
    const std::vector<at::Tensor> adversarial_projections = deconv.ProjectInput(adversarial_input, adversarial_units, project);
    const ReceptiveField& field = info.receptive_field;
    const bool whole = field.global || info.shape.size() != 4;
    const int64_t side = 112;
    const auto crop = [&](const at::Tensor& projection, const UnitTop& unit) {
      int64_t box[4] = {0, 0, spec.height, spec.width};
      if (!whole && !unit.top.empty()) field.Box(unit.top.front().y, unit.top.front().x, box);
      return ResizeSquare(CropBox(ProjectionToImage(projection), box, 0.5), side);
    };
    const std::vector<json>* labels = dissection.units.count(info.name) ? &dissection.units.at(info.name) : nullptr;
    std::vector<at::Tensor> tiles;
    std::vector<std::string> captions;
    const auto unit_json = [&](size_t position) {
      const int64_t unit = listed[position];
      const std::string stem = "changes/" + SafeFileName(display) + "_" + std::to_string(unit);
      const at::Tensor clean_tile = crop(clean_projections[position], clean_units[position]);
      const at::Tensor adversarial_tile = crop(adversarial_projections[position], adversarial_units[position]);
      WritePng(out.File(stem + "_clean.png"), clean_tile);
      WritePng(out.File(stem + "_adversarial.png"), adversarial_tile);
      json record = {{"unit", unit},
                     {"clean", before[unit].item<double>()},
                     {"adversarial", after[unit].item<double>()},
                     {"change", change[unit].item<double>()},
                     {"label", nullptr},
                     {"category", nullptr},
                     {"iou", nullptr},
                     {"detector", nullptr},
                     {"projection_clean", stem + "_clean.png"},
                     {"projection_adversarial", stem + "_adversarial.png"}};
      std::string label_text;
      if (labels && (*labels)[static_cast<size_t>(unit)].is_object()) {
        const json& given_label = (*labels)[static_cast<size_t>(unit)];
        record["label"] = given_label.value("label", "");
        record["category"] = given_label.value("category", "");
        record["iou"] = given_label.value("iou", 0.0);
        record["detector"] = given_label.value("detector", false);
        label_text = "\n" + given_label.value("label", std::string()) + " IoU " + Number(given_label.value("iou", 0.0), "%.2f") +
                     (given_label.value("detector", false) ? "" : " (no detector)");
      }
      const std::string values = display + ":" + std::to_string(unit) + " " + (change[unit].item<double>() >= 0 ? "+" : "") +
                                 Number(change[unit].item<double>()) + " (" + Number(before[unit].item<double>()) + " -> " +
                                 Number(after[unit].item<double>()) + ")" + label_text;
      // A unit silent on an image has nothing to project: its tile is plain grey, and says so.
      const auto silent = [](const UnitTop& unit) {
        return unit.top.empty() || unit.top.front().activation <= 0 ? " (silent: no projection)" : "";
      };
      tiles.push_back(clean_tile);
      captions.push_back(values + "\non clean" + silent(clean_units[position]));
      tiles.push_back(adversarial_tile);
      captions.push_back(values + "\non adversarial" + silent(adversarial_units[position]));
      return record;
    };
    json rose_records = json::array(), fell_records = json::array();
    for (size_t p = 0; p < rose.size(); ++p) rose_records.push_back(unit_json(p));
    for (size_t p = 0; p < fell.size(); ++p) fell_records.push_back(unit_json(rose.size() + p));
    const std::string figure = "changes/" + SafeFileName(display) + ".png";
    const std::string measure = count > 1 ? "the unit's spatial maximum, averaged over " + std::to_string(count) + " images"
                                          : "the unit's spatial maximum";
    WritePng(out.File(figure),
             AddHeading(MakeGrid(at::stack(tiles), captions, 4),
                        display + ": the " + std::to_string(per_side) + " units whose maximum rose most, then the " +
                            std::to_string(per_side) + " that fell most (" + measure + "); " + ToString(rule) +
                            " projections on image " + std::to_string(example) + ", cropped to the receptive field"));
    changes_figures[info.name] = figure;
    changes.push_back({{"name", info.name},
                       {"display", display},
                       {"measure", measure},
                       {"images", count},
                       {"labelled", labels != nullptr},
                       {"rose", rose_records},
                       {"fell", fell_records}});
  }
  const double changes_seconds = Seconds(changes_start);

  // What the network sees: inversions of the clean and the adversarial features.
  const auto inversion_start = Clock::now();
  json inversions = nullptr;
  if (!inversion_layers.empty()) {
    InversionOptions m;
    m.layers = inversion_layers;
    m.steps = options.inversion_steps;
    m.seed = global.seed;
    ProgressReporter reporter("adversarial inversions", "images");
    const InversionResult clean_result = NetworkInversion(probe).Run(example_clean, m, [&](int64_t g, int64_t gs, int64_t s, int64_t ss) {
      reporter.Update(0, 2, 0.5 * (static_cast<double>(g) + static_cast<double>(s) / std::max<int64_t>(1, ss)) / std::max<int64_t>(1, gs));
    });
    const InversionResult adversarial_result = NetworkInversion(probe).Run(example_adversarial, m, [&](int64_t g, int64_t gs, int64_t s, int64_t ss) {
      reporter.Update(1, 2, 0.5 + 0.5 * (static_cast<double>(g) + static_cast<double>(s) / std::max<int64_t>(1, ss)) / std::max<int64_t>(1, gs));
    });
    reporter.Update(2, 2);
    const at::Tensor original = clean_result.original;
    std::vector<at::Tensor> tiles = {Enlarge(original), Enlarge(adversarial_result.original)};
    std::vector<std::string> captions = {"clean image", "adversarial image"};
    json per_layer = json::array();
    for (size_t l = 0; l < inversion_layers.size(); ++l) {
      const LayerInversion& from_clean = clean_result.layers[l];
      const LayerInversion& from_adversarial = adversarial_result.layers[l];
      const std::string display = DisplayLayer(probe, inversion_layers[l]);
      const std::string stem = "inversions/" + SafeFileName(display);
      WritePng(out.File(stem + "_clean.png"), from_clean.image);
      WritePng(out.File(stem + "_adversarial.png"), from_adversarial.image);
      const double mse = (from_adversarial.image - original).pow(2).mean().item<double>();
      const double adversarial_psnr = 10 * std::log10(1.0 / std::max(mse, 1e-12));
      tiles.push_back(Enlarge(from_clean.image));
      captions.push_back(display + " from clean\nPSNR " + Number(from_clean.psnr, "%.1f") + " dB, err " + Number(from_clean.feature_error, "%.3f"));
      tiles.push_back(Enlarge(from_adversarial.image));
      captions.push_back(display + " from adversarial\nPSNR vs clean " + Number(adversarial_psnr, "%.1f") + " dB, err " +
                         Number(from_adversarial.feature_error, "%.3f"));
      per_layer.push_back({{"name", probe.Find(inversion_layers[l]).name},
                           {"display", display},
                           {"clean", stem + "_clean.png"},
                           {"adversarial", stem + "_adversarial.png"},
                           {"clean_feature_error", from_clean.feature_error},
                           {"adversarial_feature_error", from_adversarial.feature_error},
                           {"clean_psnr", from_clean.psnr},
                           {"adversarial_psnr", adversarial_psnr}});
    }
    WritePng(out.File("inversions.png"),
             AddHeading(MakeGrid(at::stack(tiles), captions, 2),
                        "What the network sees (Mahendran & Vedaldi inversion, " + std::to_string(options.inversion_steps) +
                            " steps) of image " + std::to_string(example) + "; PSNR against the clean image"));
    inversions = {{"image", example}, {"steps", options.inversion_steps}, {"figure", "inversions.png"}, {"layers", per_layer}};
  }
  const double inversion_seconds = Seconds(inversion_start);

  json report = ReportHeader("adversarial", *model, global.seed);
  report["options"] = ToJson(options);
  report["warnings"] = warnings;
  report["mode"] = source ? "folder" : "image";
  const double step_size = a.step_size > 0 ? a.step_size : 2.5 * a.epsilon / static_cast<double>(a.steps);
  report["attack"] = {{"source", given ? "given" : "cnnviz"},
                      {"attack", given ? json(nullptr) : json(a.attack)},
                      {"norm", options.norm},
                      {"epsilon", given ? json(nullptr) : json(a.epsilon)},
                      {"epsilon_text", given ? json(nullptr) : json(options.epsilon_text)},
                      {"steps", given ? json(nullptr) : json(a.attack == "fgsm" ? 1 : a.steps)},
                      {"step_size", given || a.attack == "fgsm" ? json(nullptr) : json(step_size)},
                      {"random_start", given || a.attack == "fgsm" ? json(nullptr) : json(a.random_start)},
                      {"target", targeted ? json{{"class", a.target}, {"name", ClassName(names, a.target)}} : json(nullptr)},
                      {"space", "image pixels in [0, 1], before the model's range and normalization"}};
  const double total_seconds = Seconds(start);
  report["summary"] = {{"images", count},
                       {"success", successes},
                       {"success_rate", static_cast<double>(successes) / static_cast<double>(count)},
                       {"success_meaning", targeted ? "prediction reached the target" : "prediction moved off the clean prediction"},
                       {"clean_predictions_kept", static_cast<int64_t>(count) - (targeted ? 0 : successes)},
                       {"linf", Spread(linf)},
                       {"l2", Spread(l2)},
                       {"input_relative_l2", Spread(input_relative)},
                       {"images_per_minute", 60.0 * static_cast<double>(count) / std::max(1e-9, total_seconds)}};
  if (targeted) {
    int64_t kept = 0;
    for (const ImageRecord& r : records) kept += r.record["clean_class"] == r.record["adversarial_class"] ? 1 : 0;
    report["summary"]["clean_predictions_kept"] = kept;
  }
  report["layers"] = layer_records;
  report["divergence_chart"] = "divergence.png";
  report["images"] = image_records;
  report["skipped"] = skipped;
  report["changes"] = changes;
  report["changes_figure"] = changes_figures;
  report["example"] = example;
  report["inversions"] = inversions;
  json labelled = json::array();
  for (const auto& [name, units] : dissection.units) labelled.push_back(name);
  report["dissection"] = dissection.path.empty() ? json(nullptr) : json{{"path", dissection.path}, {"layers", labelled}};
  const int64_t steps = given ? 0 : (a.attack == "fgsm" ? 1 : a.steps);
  report["timings"] = {{"attack_seconds", attack_seconds},
                       {"attack_steps", steps},
                       {"seconds_per_step", steps ? json(attack_seconds / static_cast<double>(steps)) : json(nullptr)},
                       {"batch_attack_seconds", batch_attack_seconds},
                       {"divergence_seconds", divergence_seconds},
                       {"changes_seconds", changes_seconds},
                       {"inversion_seconds", inversion_seconds},
                       {"total_seconds", total_seconds}};
  for (const std::string& warning : warnings) Log()->warn("{}", warning);
  WriteViewer(out, report);
  out.Finish(report);
  Log()->info("attacked {} image(s): {} of {} {}; wrote {} (open index.html)", count, successes, count,
              targeted ? "reached the target" : "changed prediction", options.out);
}

std::function<void()> AddAdversarialCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<AdversarialCommandOptions>();
  AttackOptions& a = options->attack;
  CLI::App* command = app.add_subcommand(
      "adversarial", "Attack images (FGSM, PGD) and show where in the network the attack takes hold and what changes");
  AddModelOptions(*command, options->model);
  command->add_option("--image", options->image, "One clean image (PNG/JPEG, or a .npy, see --npy-values)");
  command->add_option("--images", options->images,
                      "An image folder (recursive) or Broden root: attack every image; success rate and mean divergences");
  command->add_option("--adversarial-image", options->adversarial_image,
                      "A perturbed version of --image made by another tool: analysed instead of attacking");
  AddNpyValuesOption(*command, options->npy_values);
  command->add_option("--attack", a.attack, "fgsm (one step of size epsilon, Goodfellow et al.) or pgd (Madry et al.)")
      ->check(CLI::IsMember({"fgsm", "pgd"}))
      ->capture_default_str();
  command->add_option("--norm", options->norm, "Budget: linf (max |delta| <= epsilon) or l2 (||delta||_2 <= epsilon per image)")
      ->check(CLI::IsMember({"linf", "l2"}))
      ->capture_default_str();
  command->add_option("--epsilon", options->epsilon_text,
                      "Budget in image pixels in [0, 1] (8/255 = eight 8-bit steps), whatever the model's range and "
                      "normalization; a number or a fraction")
      ->capture_default_str();
  command->add_option("--steps", a.steps, "PGD iterations")->capture_default_str();
  command->add_option("--step-size", options->step_size_text, "PGD step (auto = 2.5 epsilon / steps)")->capture_default_str();
  command->add_flag("--no-random-start", options->no_random_start, "PGD starts at the clean image, not at a random point of the ball");
  command->add_option("--target", a.target, "Targeted attack toward this class (default: untargeted, away from the clean prediction)");
  command->add_option("--layers", options->layers_text,
                      "Layers where divergences are measured: all (the sidecar's aliases, else every convolution), "
                      "all-conv, or a,b,c")
      ->capture_default_str();
  command->add_option("--inspect", options->inspect_text,
                      "Layers whose units that rose and fell most are listed and projected: auto (the middle and the "
                      "deepest spatial layer of --layers), none, or a,b,c")
      ->capture_default_str();
  command->add_option("--changed-units", options->changed_units, "Units listed per direction (rose, fell) and layer")
      ->capture_default_str();
  command->add_option("--dissection", options->dissection,
                      "A `cnnviz dissect` output folder of this model: the listed units get its concept labels");
  command->add_option("--rule", options->rule, "Backward rule of the unit projections: deconvnet, guided or gradient")
      ->check(CLI::IsMember({"deconvnet", "guided", "gradient"}))
      ->capture_default_str();
  command->add_option("--inversion-layers", options->inversion_layers_text,
                      "Layers whose features of the clean and the adversarial image are inverted: auto (the first, "
                      "middle and deepest spatial layer), none, or a,b,c")
      ->capture_default_str();
  command->add_option("--inversion-steps", options->inversion_steps, "Inversion iterations (L-BFGS, coarse to fine)")
      ->capture_default_str();
  command->add_option("--batch", options->batch, "Images attacked together")->capture_default_str();
  command->add_option("--max-images", options->max_images, "--images: attack at most this many (0 = all)")->capture_default_str();
  command->add_option("--workers", options->workers, "--images: threads decoding the next batches")->capture_default_str();
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->footer(
      "Outputs in --out: index.html (open it: the viewer), report.json (every number; docs/adversarial.md), data.js,\n"
      "divergence.png (relative L2 and cosine of clean vs adversarial activations per layer, with the perturbation's own\n"
      "relative size as the reference line), images/NNNN.png (clean | adversarial | amplified perturbation with top-5\n"
      "classes), changes/<layer>.png (units that rose and fell most, projected on both images), inversions.png.\n"
      "Untargeted attacks move away from the clean prediction; success = the top-1 class changed (targeted: became\n"
      "--target). Projections and inversions use one example image: the first the attack moved (else the first).\n"
      "Examples:\n"
      "  cnnviz adversarial --model models/tinycnn.pt --image dataset/concepts/images/0000.png --out out/adv\n"
      "  cnnviz adversarial --model models/tinycnn.pt --images dataset/concepts --max-images 200 --attack fgsm\n"
      "  cnnviz adversarial --model m.pt --image x.png --target 3 --norm l2 --epsilon 0.5 --steps 40\n"
      "  cnnviz adversarial --model m.pt --image x.png --adversarial-image x_adv.png --dissection out/dissect");
  return [options, &global, command]() {
    if (!command->parsed()) return;
    RunAdversarial(*options, global);
  };
}

}  // namespace cnnviz::app
