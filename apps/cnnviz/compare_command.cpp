#include "cnnviz/compare_command.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/io/crop.h"
#include "cnnviz/io/figures.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/report.h"
#include "cnnviz/methods/activation_maximization.h"
#include "cnnviz/options_json.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"
#include "cnnviz/viewer.h"

namespace cnnviz::app {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kTile = 96;

struct ModelEntry {
  std::string name, path;
  std::optional<int64_t> step;  // the last number in the name
  std::shared_ptr<Model> model;
  std::unique_ptr<Probe> probe;
  json key;                     // what its dissection depends on (stages/)
  json dissection;              // Summarize()'s output, fresh or resumed
  bool resumed = false;
};

std::optional<int64_t> LastNumber(const std::string& text) {
  size_t end = text.find_last_of("0123456789");
  if (end == std::string::npos) return std::nullopt;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(text[begin - 1]))) --begin;
  if (end - begin > 15) return std::nullopt;
  return std::stoll(text.substr(begin, end - begin + 1));
}

std::string Fixed(double v, const char* format) {
  char text[48];
  std::snprintf(text, sizeof(text), format, v);
  return text;
}

// Per unit its top image with the mask outlined (the tile the strips and pages show), written under
// `folder`; per layer detectors and unique concepts. The JSON a model's stage records.
json Summarize(const DissectionResult& result, const SegmentationSource& source, const Probe& probe, double iou_threshold,
               const OutputFolder& out, const std::string& folder_of_model, bool tiles) {
  const auto& categories = source.categories();
  const auto& labels = source.labels();
  const InputSpec& spec = probe.model().input_spec();
  std::map<int64_t, at::Tensor> images;  // decoded top images, shared by units
  json layers = json::array();
  for (const LayerDissection& layer : result.layers) {
    const std::string display = DisplayLayer(probe, layer.name);
    json units = json::array();
    for (const UnitDissection& unit : layer.units) {
      json tile = nullptr;
      if (tiles && !unit.top_images.empty()) {
        const int64_t index = unit.top_images.front().first;
        auto found = images.find(index);
        if (found == images.end()) {
          at::Tensor image = source.Load(static_cast<size_t>(index));
          image = at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false).squeeze(0);
          found = images.emplace(index, ResizeSquare(image, kTile)).first;
        }
        const at::Tensor mask = NetworkDissection::TopImageMask(layer, unit.unit, 0, kTile, kTile);
        char name[48];
        std::snprintf(name, sizeof(name), "/unit_%04lld.png", static_cast<long long>(unit.unit));
        const std::string file = "layers/" + SafeFileName(display) + "/" + folder_of_model + name;
        WritePng(out.File(file), OutlineMask(found->second, mask));
        tile = file;
      }
      const bool labelled = unit.best.label > 0;
      units.push_back({{"label", labelled ? json(labels[unit.best.label].name) : json(nullptr)},
                       {"category", labelled && unit.category >= 0 ? json(categories[unit.category]) : json(nullptr)},
                       {"iou", unit.best.iou},
                       {"detector", labelled && unit.best.iou > iou_threshold},
                       {"tile", tile}});
    }
    json unique = json::object(), per_category = json::object();
    int64_t unique_total = 0;
    for (size_t c = 0; c < categories.size(); ++c) {
      unique[categories[c]] = layer.unique_concepts[c];
      per_category[categories[c]] = layer.detectors_per_category[c];
      unique_total += layer.unique_concepts[c];
    }
    layers.push_back({{"name", layer.name},
                      {"detectors", layer.detectors},
                      {"unique_total", unique_total},
                      {"unique_concepts", unique},
                      {"detectors_per_category", per_category},
                      {"units", units}});
  }
  return {{"layers", layers}, {"images", result.images}};
}

json ReadStage(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nullptr;
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return nullptr;  // a damaged record: the model is dissected again
  }
}

}  // namespace

void RunCompare(CompareCommandOptions options, const GlobalOptions& global) {
  const auto start = Clock::now();
  DissectionOptions& m = options.method;
  options.dataset_options.categories = SplitList(options.categories_text);
  // Models, names and their order.
  std::vector<std::string> paths;
  for (const std::string& value : options.models) {
    for (const std::string& path : SplitList(value)) paths.push_back(path);
  }
  if (paths.empty()) throw UsageError("--models needs at least one model file");
  std::vector<std::string> names = SplitList(options.names_text);
  if (!names.empty() && names.size() != paths.size()) {
    throw UsageError("--names gives " + std::to_string(names.size()) + " name(s) for " + std::to_string(paths.size()) + " model(s)");
  }
  std::vector<ModelEntry> models(paths.size());
  std::set<std::string> seen;
  for (size_t i = 0; i < paths.size(); ++i) {
    models[i].path = paths[i];
    models[i].name = names.empty() ? fs::path(paths[i]).stem().string() : names[i];
    if (models[i].name.empty() || SafeFileName(models[i].name) != models[i].name) {
      throw UsageError("model name '" + models[i].name + "' must be non-empty and use only letters, digits, '-', '_' and '.' (--names)");
    }
    if (!seen.insert(models[i].name).second) throw UsageError("two models are named '" + models[i].name + "': give --names");
    models[i].step = LastNumber(models[i].name);
  }
  if (options.order == "numeric") {
    for (const ModelEntry& entry : models) {
      if (!entry.step) throw UsageError("--order numeric: the name '" + entry.name + "' has no number");
    }
    std::stable_sort(models.begin(), models.end(), [](const ModelEntry& a, const ModelEntry& b) { return *a.step < *b.step; });
  }
  std::vector<double> alphas;
  for (const std::string& text : SplitList(options.rotations_text)) {
    size_t used = 0;
    double alpha = -1;
    try {
      alpha = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || !(alpha >= 0 && alpha <= 1)) {
      throw UsageError("--rotations takes amounts in [0, 1] such as 0,0.25,0.5,1, not '" + text + "'");
    }
    if (std::find(alphas.begin(), alphas.end(), alpha) == alphas.end()) alphas.push_back(alpha);
  }
  std::sort(alphas.begin(), alphas.end());
  if (!alphas.empty() && alphas.front() != 0) alphas.insert(alphas.begin(), 0.0);  // the unrotated reference
  if (options.strip_units < 0) throw UsageError("--strip-units must be >= 0");
  for (ModelEntry& entry : models) {
    entry.model = LoadModel(ModelOptions{entry.path, options.input_size}, global);
    entry.probe = MakeProbe(entry.model);
  }
  const Probe& first = *models.front().probe;
  // Layers: resolved on the first model, looked up by the same names in the others.
  m.layers.clear();
  for (const std::string& name : ResolveLayerList(options.layers_text, first)) {
    const LayerInfo& info = first.FindUnits(name);
    if (info.shape.size() != 4) throw UsageError("layer '" + name + "' has no spatial extent: dissection needs convolutional maps");
    m.layers.push_back(info.alias.empty() ? info.name : info.alias);
  }
  bool same_architecture = true;
  for (const ModelEntry& entry : models) {
    for (const std::string& layer : m.layers) {
      const LayerInfo* info = nullptr;
      try {
        info = &entry.probe->FindUnits(layer);
      } catch (const Error& e) {
        throw UsageError("model '" + entry.name + "': " + FirstLine(e.what()));
      }
      const LayerInfo& reference = first.FindUnits(layer);
      if (info->shape != reference.shape || info->name != reference.name) same_architecture = false;
    }
  }
  m.Check();
  std::vector<int64_t> strip_units;
  if (options.units_given) {
    strip_units = ParseUnits(options.units_text);
    if (!same_architecture) throw UsageError("--units needs models of one architecture (their units correspond)");
  }
  const std::string root = ResolveBrodenRoot(options.dataset);
  std::unique_ptr<SegmentationSource> source = OpenBroden(root, options.dataset_options);
  const OutputFolder out(options.out);
  std::vector<std::string> warnings;

  // Finished models (stages/<name>.json) whose inputs are unchanged are not dissected again.
  const json shared_key = {{"dataset", fs::absolute(root).lexically_normal().string()},
                           {"dataset_images", source->size()},
                           {"split", options.dataset_options.split},
                           {"categories", options.dataset_options.categories},
                           {"max_images", options.dataset_options.max_images},
                           {"layers", m.layers},
                           {"quantile", m.quantile},
                           {"iou_threshold", m.iou_threshold},
                           {"input_size", options.input_size ? json(*options.input_size) : json(nullptr)},
                           {"version", 1}};
  const auto file_key = [&](const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    const auto time = fs::last_write_time(path, ec).time_since_epoch().count();
    return json{{"path", fs::absolute(path).lexically_normal().string()}, {"bytes", size}, {"modified", time}, {"run", shared_key}};
  };
  std::vector<DissectionJob> jobs;
  std::vector<size_t> job_model;  // per job: the model it dissects (rotations: the last)
  for (size_t i = 0; i < models.size(); ++i) {
    ModelEntry& entry = models[i];
    entry.key = file_key(entry.path);
    const json stage = options.restart ? json(nullptr) : ReadStage(out.File("stages/" + entry.name + ".json"));
    if (stage.is_object() && stage.value("key", json()) == entry.key && stage.contains("dissection")) {
      entry.dissection = stage["dissection"];
      entry.resumed = true;
      Log()->info("{}: dissection from an earlier run (stages/{}.json)", entry.name, entry.name);
      continue;
    }
    jobs.push_back({entry.probe.get(), {}});
    job_model.push_back(i);
  }
  // Rotations of the last model: one job per alpha > 0, the basis of each layer Q^alpha with one Q per layer.
  const ModelEntry& last = models.back();
  const json rotation_key = {{"model", file_key(last.path)}, {"alphas", alphas}, {"seed", global.seed}};
  json rotation_stage = options.restart || alphas.empty() ? json(nullptr) : ReadStage(out.File("stages/rotations.json"));
  const bool rotations_resumed = rotation_stage.is_object() && rotation_stage.value("key", json()) == rotation_key;
  const size_t rotation_jobs_begin = jobs.size();
  if (!rotations_resumed) {
    for (double alpha : alphas) {
      if (alpha == 0) continue;
      DissectionJob job{last.probe.get(), {}};
      for (size_t l = 0; l < m.layers.size(); ++l) {
        job.bases.push_back(InterpolatedRotation(last.probe->FindUnits(m.layers[l]).units, alpha, global.seed + l));
      }
      jobs.push_back(job);
    }
  }

  const auto pass_start = Clock::now();
  std::vector<DissectionResult> results;
  if (!jobs.empty()) {
    Log()->info("dissecting {} layer(s) of {} model(s){} in one pass over {} images of {}", m.layers.size(),
                rotation_jobs_begin, jobs.size() > rotation_jobs_begin ? " and " + std::to_string(jobs.size() - rotation_jobs_begin) + " rotation(s)" : "",
                source->size(), root);
    ProgressReporter reporter("compare pass 1/2 (thresholds)", "images");
    int current = 1;
    results = NetworkDissection::RunModels(jobs, *source, m, [&](int pass, size_t done, size_t total) {
      if (pass != current) {
        current = pass;
        reporter.Restart("compare pass 2/2 (tally)");
      }
      reporter.Update(static_cast<int64_t>(done), static_cast<int64_t>(total));
    });
    for (const auto& [index, reason] : results.front().skipped) Log()->warn("skipped {}", reason);
    if (!results.front().skipped.empty()) {
      warnings.push_back(std::to_string(results.front().skipped.size()) + " image(s) could not be read and were skipped");
    }
  }
  const double pass_seconds = std::chrono::duration<double>(Clock::now() - pass_start).count();
  const auto figures_start = Clock::now();
  for (size_t j = 0; j < rotation_jobs_begin; ++j) {
    ModelEntry& entry = models[job_model[j]];
    entry.dissection = Summarize(results[j], *source, *entry.probe, m.iou_threshold, out, entry.name, true);
    WriteJson(out.File("stages/" + entry.name + ".json"), {{"key", entry.key}, {"dissection", entry.dissection}});
  }
  json rotation_points = json::array();
  if (!alphas.empty()) {
    if (rotations_resumed) {
      rotation_points = rotation_stage["points"];
    } else {
      size_t j = rotation_jobs_begin;
      for (double alpha : alphas) {
        const json summary = alpha == 0 ? last.dissection
                                        : Summarize(results[j++], *source, *last.probe, m.iou_threshold, out, "", false);
        json per_layer = json::array();
        for (const json& layer : summary["layers"]) {
          per_layer.push_back({{"detectors", layer["detectors"]}, {"unique_total", layer["unique_total"]},
                               {"unique_concepts", layer["unique_concepts"]}});
        }
        rotation_points.push_back({{"alpha", alpha}, {"layers", per_layer}});
      }
      WriteJson(out.File("stages/rotations.json"), {{"key", rotation_key}, {"points", rotation_points}});
    }
  }

  // Per layer: the numbers across models, the charts, the units' evolution and strips.
  const auto& categories = source->categories();
  std::vector<std::string> model_names;
  for (const ModelEntry& entry : models) model_names.push_back(entry.name);
  json layers = json::array();
  std::vector<Series> overall_unique, overall_detectors;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LayerInfo& info = first.FindUnits(m.layers[l]);
    const std::string display = DisplayLayer(first, m.layers[l]);
    const std::string folder = "layers/" + SafeFileName(display);
    json per_model = json::array();
    Series detectors{"detectors", {}, 0}, unique{"unique concepts", {}, 1};
    std::vector<Series> per_category;
    for (size_t c = 0; c < categories.size(); ++c) per_category.push_back({"unique " + categories[c], {}, static_cast<int>(c) + 2});
    for (const ModelEntry& entry : models) {
      const json& layer = entry.dissection["layers"][l];
      per_model.push_back({{"model", entry.name},
                           {"detectors", layer["detectors"]},
                           {"unique_total", layer["unique_total"]},
                           {"unique_concepts", layer["unique_concepts"]},
                           {"detectors_per_category", layer["detectors_per_category"]}});
      detectors.values.push_back(layer["detectors"].get<double>());
      unique.values.push_back(layer["unique_total"].get<double>());
      for (size_t c = 0; c < categories.size(); ++c) per_category[c].values.push_back(layer["unique_concepts"][categories[c]].get<double>());
    }
    std::vector<Series> series = {detectors, unique};
    for (const Series& s : per_category) {
      if (*std::max_element(s.values.begin(), s.values.end()) > 0) series.push_back(s);
    }
    const std::string chart = folder + "/interpretability.png";
    WritePng(out.File(chart), LineChart(display + ": detectors (IoU > " + Fixed(m.iou_threshold, "%.2f") +
                                            ") and unique concepts per model, " + std::to_string(source->size()) + " images",
                                        model_names, series, "count"));
    overall_unique.push_back({display, unique.values, static_cast<int>(l)});
    overall_detectors.push_back({display, detectors.values, static_cast<int>(l)});

    json evolution = nullptr;
    if (same_architecture) {
      json units = json::array();
      std::vector<std::pair<int64_t, int64_t>> changed;  // (changes, unit)
      for (int64_t u = 0; u < info.units; ++u) {
        json per_unit = json::array(), concepts = json::array(), changes = json::array();
        json previous;
        for (size_t i = 0; i < models.size(); ++i) {
          const json& unit = models[i].dissection["layers"][l]["units"][static_cast<size_t>(u)];
          per_unit.push_back(unit);
          const json concept = unit["detector"].get<bool>() ? unit["label"] : json(nullptr);
          if (i > 0 && concept != previous) changes.push_back({{"at", models[i].name}, {"from", previous}, {"to", concept}});
          concepts.push_back(concept);
          previous = concept;
        }
        if (!changes.empty()) changed.emplace_back(static_cast<int64_t>(changes.size()), u);
        units.push_back({{"unit", u}, {"per_model", per_unit}, {"concept", concepts}, {"changes", changes}, {"strip", nullptr}});
      }
      std::vector<int64_t> chosen = strip_units;
      if (!options.units_given) {
        std::stable_sort(changed.begin(), changed.end(), [](auto a, auto b) { return a.first > b.first; });
        for (size_t k = 0; k < changed.size() && static_cast<int64_t>(k) < options.strip_units; ++k) chosen.push_back(changed[k].second);
        std::sort(chosen.begin(), chosen.end());
      }
      for (int64_t u : chosen) {
        if (u >= info.units) {
          throw UsageError("--units: unit " + std::to_string(u) + " is out of range for " + display + " (" +
                           std::to_string(info.units) + " units)");
        }
      }
      // Each chosen unit's activation maximization in every model (one batch per model), same seed.
      std::vector<std::map<int64_t, std::pair<at::Tensor, double>>> actmax;
      if (options.actmax_steps > 0 && !chosen.empty()) {
        ProgressReporter reporter("compare actmax " + display, "models");
        for (size_t i = 0; i < models.size(); ++i) {
          ActMaxOptions a;
          a.layer = m.layers[l];
          a.units = chosen;
          a.render.steps = options.actmax_steps;
          a.seed = global.seed;
          const ActMaxResult result = ActivationMaximization(*models[i].probe).Run(a);
          std::map<int64_t, std::pair<at::Tensor, double>> images;
          for (size_t k = 0; k < result.units.size(); ++k) {
            images[result.units[k].unit] = {result.images[static_cast<int64_t>(k)], result.units[k].final_value};
          }
          actmax.push_back(std::move(images));
          reporter.Update(static_cast<int64_t>(i + 1), static_cast<int64_t>(models.size()));
        }
      }
      for (int64_t u : chosen) {
        std::vector<at::Tensor> tiles;
        std::vector<std::string> captions;
        for (size_t i = 0; i < models.size() && !actmax.empty(); ++i) {
          const auto& [image, value] = actmax[i].at(u);
          tiles.push_back(ResizeSquare(image, kTile));
          captions.push_back(models[i].name + "\nactmax " + Fixed(value, "%.3g"));
        }
        for (size_t i = 0; i < models.size(); ++i) {
          const json& unit = units[static_cast<size_t>(u)]["per_model"][i];
          tiles.push_back(unit["tile"].is_string() ? ReadImage(out.File(unit["tile"].get<std::string>()))
                                                   : at::full({3, kTile, kTile}, 0.5));
          captions.push_back(models[i].name + "\n" + (unit["label"].is_string() ? unit["label"].get<std::string>() : "-") +
                             " " + Fixed(unit["iou"].get<double>(), "%.3f") + (unit["detector"].get<bool>() ? "" : "\n(no detector)"));
        }
        char name[48];
        std::snprintf(name, sizeof(name), "/strips/unit_%04lld.png", static_cast<long long>(u));
        const std::string strip = folder + name;
        WritePng(out.File(strip), AddHeading(MakeGrid(at::stack(tiles), captions, static_cast<int64_t>(models.size())),
                                             display + " unit " + std::to_string(u) + " across models: " +
                                                 (actmax.empty() ? std::string() : "activation maximization (" +
                                                  std::to_string(options.actmax_steps) + " steps), then ") +
                                                 "its top image (mask outlined), best label and IoU"));
        units[static_cast<size_t>(u)]["strip"] = strip;
      }
      evolution = {{"changed_units", changed.size()}, {"strip_units", chosen}, {"units", units}};
    }

    json rotations = nullptr;
    if (!alphas.empty()) {
      json points = json::array();
      std::vector<std::string> x;
      Series rotated_detectors{"detectors", {}, 0}, rotated_unique{"unique concepts", {}, 1};
      for (const json& point : rotation_points) {
        const json& layer = point["layers"][l];
        points.push_back({{"alpha", point["alpha"]},
                          {"detectors", layer["detectors"]},
                          {"unique_total", layer["unique_total"]},
                          {"unique_concepts", layer["unique_concepts"]}});
        x.push_back("alpha " + Fixed(point["alpha"].get<double>(), "%.2f"));
        rotated_detectors.values.push_back(layer["detectors"].get<double>());
        rotated_unique.values.push_back(layer["unique_total"].get<double>());
      }
      const std::string rotation_chart = folder + "/rotations.png";
      WritePng(out.File(rotation_chart),
               LineChart(display + " of " + last.name + " rotated by Q^alpha (random rotation, seed " + std::to_string(global.seed + l) +
                             "): is interpretability axis-aligned?",
                         x, {rotated_detectors, rotated_unique}, "count"));
      rotations = {{"model", last.name}, {"seed", global.seed + l}, {"points", points}, {"chart", rotation_chart}};
    }
    layers.push_back({{"name", info.name},
                      {"display", display},
                      {"units", info.units},
                      {"per_model", per_model},
                      {"chart", chart},
                      {"evolution", evolution},
                      {"rotations", rotations}});
  }
  const at::Tensor unique_chart = LineChart("Unique concepts per layer across models", model_names, overall_unique, "unique concepts");
  const at::Tensor detector_chart = LineChart("Detectors per layer across models", model_names, overall_detectors, "detectors");
  const int64_t width = std::max(unique_chart.size(2), detector_chart.size(2));
  const auto pad = [&](const at::Tensor& c) { return at::constant_pad_nd(c, {0, width - c.size(2)}, 1.0); };
  WritePng(out.File("interpretability.png"), at::cat({pad(unique_chart), pad(detector_chart)}, 1));
  if (!same_architecture) warnings.push_back("the models differ in architecture: units do not correspond, so only per-layer numbers are compared");

  json model_records = json::array();
  for (size_t i = 0; i < models.size(); ++i) {
    model_records.push_back({{"name", models[i].name},
                             {"path", models[i].path},
                             {"order", i},
                             {"step", models[i].step ? json(*models[i].step) : json(nullptr)},
                             {"resumed", models[i].resumed}});
  }
  json report = ReportHeader("compare", *models.front().model, global.seed);
  report["options"] = ToJson(options);
  report["warnings"] = warnings;
  report["dataset"] = {{"path", root}, {"images", models.front().dissection["images"]}, {"categories", categories}};
  report["iou_threshold"] = m.iou_threshold;
  report["models"] = model_records;
  report["same_architecture"] = same_architecture;
  report["layers"] = layers;
  report["chart"] = "interpretability.png";
  report["timings"] = {{"pass_seconds", pass_seconds},
                       {"figures_seconds", std::chrono::duration<double>(Clock::now() - figures_start).count()},
                       {"total_seconds", std::chrono::duration<double>(Clock::now() - start).count()}};
  for (const std::string& warning : warnings) Log()->warn("{}", warning);
  WriteJson(out.File("compare.json"), report);
  WriteViewer(out, report);
  out.Finish(report);
  Log()->info("compared {} model(s) on {} layer(s); wrote {} (open index.html)", models.size(), m.layers.size(), options.out);
}

std::function<void()> AddCompareCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<CompareCommandOptions>();
  DissectionOptions& m = options->method;
  CLI::App* command = app.add_subcommand(
      "compare", "Dissect several models (training checkpoints, or different networks) in one pass; rotations of a layer's basis");
  command->add_option("--models", options->models,
                      "Model files: several values (a shell glob such as ckpt_*.pt) or comma-separated")
      ->required()
      ->expected(1, -1);
  command->add_option("--names", options->names_text, "Names, one per model, comma-separated (default: file names without .pt)");
  command->add_option("--order", options->order,
                      "given (the command line's order) or numeric (by the last number in each name: ckpt_250 before ckpt_1000)")
      ->check(CLI::IsMember({"given", "numeric"}))
      ->capture_default_str();
  command->add_option("--input-size", options->input_size, "Square input side in pixels for every model (default: the sidecars')")
      ->check(CLI::Range(int64_t{1}, int64_t{8192}));
  command->add_option("--dataset", options->dataset,
                      "Broden-format root; 'broden' = $CNNVIZ_BRODEN or ./dataset/broden1_224")
      ->capture_default_str();
  command->add_option("-l,--layers", options->layers_text,
                      "Layers: all (the first model's sidecar aliases, else every Conv2d), all-conv, or a,b,c; looked "
                      "up by the same names in every model")
      ->capture_default_str();
  command->add_option("--rotations", options->rotations_text,
                      "Rotate each layer of the last model by Q^alpha (Q a random rotation from --seed, alpha in "
                      "[0, 1]), e.g. 0,0.25,0.5,1: unique detectors against alpha (Bau et al.)");
  command->add_option("-u,--units", options->units_text, "Units with a strip across models (default: those whose concept changed)");
  command->add_option("--strip-units", options->strip_units, "Without --units: strips for at most this many changed units per layer")
      ->capture_default_str();
  command->add_option("--actmax-steps", options->actmax_steps,
                      "Activation maximization steps for the strips' units in every model (0 = top images only)")
      ->capture_default_str();
  command->add_option("--split", options->dataset_options.split, "train, val or all")
      ->check(CLI::IsMember({"train", "val", "all"}))
      ->capture_default_str();
  command->add_option("--categories", options->categories_text, "Only these categories (as dissect)");
  command->add_option("--quantile", m.quantile, "Top activation quantile defining each unit's mask")->capture_default_str();
  command->add_option("--iou-threshold", m.iou_threshold, "IoU above which a unit is a detector")->capture_default_str();
  AddPrecisionOption(*command, m.precision,
                     "the network's forward pass; thresholds and tallies stay float32");
  command->add_option("--batch", m.batch, "Images per forward pass (each batch runs through every model)")->capture_default_str();
  command->add_option("--max-images", options->dataset_options.max_images, "Use at most this many images (0 = all)")
      ->capture_default_str();
  command->add_option("--cache-mb", m.cache_mb, "First-pass activations kept for the second pass, all models together (MiB)")
      ->capture_default_str();
  command->add_option("--workers", m.decode_threads, "Threads decoding images and masks (0 = auto)")->capture_default_str();
  command->add_flag("--restart", options->restart, "Dissect every model again, ignoring the finished ones in stages/");
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->footer(
      "One pass over the dataset: each batch is decoded once and run through every model; thresholds and tallies are\n"
      "kept per model (memory: one dissect run's per-layer state per model and rotation). A model whose dissection\n"
      "is recorded in stages/ with the same file, dataset and options is not dissected again: add a checkpoint to a\n"
      "comparison and only it runs. Models of one architecture get units x models tables (label and IoU per model,\n"
      "the units whose concept changed and when, strips of their top images); different architectures only\n"
      "per-layer numbers. Outputs: index.html (open it), compare.json / report.json (docs/compare.md),\n"
      "interpretability.png, layers/<layer>/interpretability.png, rotations.png, strips/unit_NNNN.png.\n"
      "Examples:\n"
      "  cnnviz compare --models models/checkpoints/ckpt_*.pt --order numeric --dataset dataset/concepts\n"
      "  cnnviz compare --models a.pt,b.pt --names dropout,no-dropout --dataset broden --layers layer4\n"
      "  cnnviz compare --models models/tinycnn.pt --dataset dataset/concepts --layers conv5 --rotations 0,0.25,0.5,1");
  return [options, &global, command]() {
    if (!command->parsed()) return;
    options->units_given = command->count("--units") > 0;
    RunCompare(*options, global);
  };
}

}  // namespace cnnviz::app
