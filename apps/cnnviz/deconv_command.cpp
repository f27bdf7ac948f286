#include "cnnviz/deconv_command.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <sstream>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/io/crop.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/report.h"
#include "cnnviz/options_json.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"

namespace cnnviz::app {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kMinTile = 88, kMaxTile = 160;

}  // namespace

void RunDeconv(DeconvCommandOptions options, const GlobalOptions& global) {
  const auto start = std::chrono::steady_clock::now();
  DeconvOptions& m = options.method;
  m.layers = SplitList(options.layers_text);
  if (options.units_given) m.units = ParseUnits(options.units_text);
  for (const auto& part : SplitList(options.position_text)) {
    if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos) {
      throw UsageError("--position takes row,column (non-negative integers), not '" + options.position_text + "'");
    }
    m.position.push_back(std::stoll(part));
  }
  m.rule = ParseBackwardRule(options.rule);
  m.Check();
  if (options.dataset.empty() == options.image.empty()) throw UsageError("give exactly one of --dataset DIR and --image FILE");
  std::shared_ptr<Model> model = LoadModel(options.model, global);
  const std::unique_ptr<Probe> probe_owner = MakeProbe(model);
  Probe& probe = *probe_owner;
  const OutputFolder out(options.out);
  DeconvNet method(probe);
  const InputSpec& spec = model->input_spec();
  // Which activations the rule covers in front of the layers; a rule that covers none would silently
  // give the plain gradient.
  nlohmann::json coverage_report = nlohmann::json::object();
  if (m.rule != BackwardRule::kGradient) {
    for (const auto& layer : m.layers) {
      const RuleCoverage coverage = probe.Coverage(ViewSpec{{layer}, false});
      if (coverage.covered_count() == 0) {
        throw UsageError("--rule " + ToString(m.rule) + " changes nothing in front of '" + layer +
                         "': no activation there is one it covers (relu, relu6, silu, gelu, hardswish, hardsigmoid, "
                         "elu, leaky_relu, mish; found " + coverage.Describe().substr(coverage.Describe().find("plain gradient: ") + 16) +
                         "); use --rule gradient");
      }
      Log()->info("--rule {} in front of {}: {}", ToString(m.rule), DisplayLayer(probe, layer), coverage.Describe());
      if (!coverage.plain_gradient.empty()) {
        Log()->warn("--rule {}: activations in front of {} that keep their plain gradient: {}", ToString(m.rule),
                    DisplayLayer(probe, layer), coverage.Describe().substr(coverage.Describe().find("plain gradient: ") + 16));
      }
      coverage_report[layer] = {{"covered", coverage.covered}, {"plain_gradient", coverage.plain_gradient}};
    }
  }

  std::unique_ptr<ImageSource> source;
  std::vector<UnitTop> units;
  ScanStats stats;
  ModelInput single;  // --image
  std::vector<std::vector<at::Tensor>> projections;
  if (!options.image.empty()) {
    if (m.layers.size() != 1) throw UsageError("--image takes one --layer");
    single = ReadModelInput(options.image, *model, options.npy_values);
    // --units: those units at their maximum in this image; otherwise the image's --top strongest.
    units = method.ImageUnits(single.input, m.layers[0], m.units, m.top);
    stats.images = 1;
  } else {
    source = OpenImageDataset(options.dataset);
    ProgressReporter reporter("deconv scan", "images");
    units = method.Scan(*source, m, &stats, [&](size_t done, size_t total) {
      reporter.Update(static_cast<int64_t>(done), static_cast<int64_t>(total));
    });
    for (const auto& [index, reason] : stats.skipped) Log()->warn("skipped {}", reason);
  }
  const auto scanned = std::chrono::steady_clock::now();
  if (source) {
    projections = method.Project(*source, units, m);
  } else {
    for (const at::Tensor& projection : method.ProjectInput(single.input, units, m)) projections.push_back({projection});
  }
  const auto projected = std::chrono::steady_clock::now();


  json records = json::array();
  std::vector<at::Tensor> mosaic;
  std::vector<std::string> captions;
  std::map<std::string, int64_t> tiles;
  for (size_t u = 0; u < units.size(); ++u) {
    const UnitTop& unit = units[u];
    const LayerInfo& layer = probe.Find(unit.layer);
    const ReceptiveField& field = layer.receptive_field;
    const bool global = field.global || layer.shape.size() != 4;  // class targets see the whole image
    const int64_t side = std::clamp<int64_t>(global ? std::max(spec.height, spec.width) : std::max(field.size[0], field.size[1]),
                                             kMinTile, kMaxTile);
    std::vector<at::Tensor> patches, shown;
    std::vector<std::string> tile_captions;
    json top = json::array();
    const std::string shown_layer = DisplayLayer(probe, unit.layer);
    const std::string stem = SafeFileName(shown_layer + "_" + std::to_string(unit.unit));
    for (size_t r = 0; r < unit.top.size(); ++r) {
      const TopActivation& entry = unit.top[r];
      int64_t box[4] = {0, 0, spec.height, spec.width};
      if (!global) field.Box(entry.y, entry.x, box);
      at::Tensor image = source ? source->Load(entry.image) : single.image;
      image = at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false).squeeze(0);
      patches.push_back(ResizeSquare(CropBox(image, box, 0.5), side));
      shown.push_back(ResizeSquare(CropBox(ProjectionToImage(projections[u][r]), box, 0.5), side));
      const std::string name = source ? source->Name(entry.image) : options.image;
      char activation[48];
      std::snprintf(activation, sizeof(activation), "#%zu  act %.3g", r + 1, entry.activation);
      tile_captions.push_back(std::string(activation) + "\n" + fs::path(name).filename().string());
      json item = {{"image", name},
                   {"activation", entry.activation},
                   {"position", {entry.y, entry.x}},
                   {"box", {box[0], box[1], box[2], box[3]}}};
      if (options.save_arrays) {
        const std::string array = "arrays/" + stem + "_" + std::to_string(r) + ".npy";
        WriteNpy(out.File(array), projections[u][r]);
        item["array"] = array;
      }
      top.push_back(item);
    }
    // Zeiler & Fergus's figure: projections on the left, the image patches on the right.
    const int64_t columns = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(unit.top.size()))));
    const at::Tensor left = MakeGrid(at::stack(shown), tile_captions, columns);
    const at::Tensor right = MakeGrid(at::stack(patches), tile_captions, columns);
    const std::string path_note = shown_layer == probe.Find(unit.layer).name ? "" : " (" + probe.Find(unit.layer).name + ")";
    const std::string scope = source ? "top " + std::to_string(unit.top.size()) + " of " + std::to_string(stats.images) + " images"
                                     : "in " + fs::path(options.image).filename().string();
    WritePng(out.File("units/" + stem + ".png"),
             AddHeading(at::cat({left, right}, 2), shown_layer + ":" + std::to_string(unit.unit) + path_note + ", " + scope +
                                                      ", rule " + ToString(m.rule) + ". Left: projections; right: image patches"));
    mosaic.push_back(ResizeSquare(shown.front(), 96));
    char best[48];
    std::snprintf(best, sizeof(best), "\nact %.3g", unit.top.empty() ? 0.0 : unit.top.front().activation);
    captions.push_back(shown_layer + ":" + std::to_string(unit.unit) + best);
    records.push_back({{"layer", unit.layer},
                       {"unit", unit.unit},
                       {"receptive_field", {{"size", {field.size[0], field.size[1]}},
                                            {"stride", {field.stride[0], field.stride[1]}},
                                            {"offset", {field.offset[0], field.offset[1]}},
                                            {"global", field.global}}},
                       {"figure", "units/" + stem + ".png"},
                       {"top", top}});
  }
  if (!mosaic.empty()) WritePng(out.File("grid.png"), MakeGrid(at::stack(mosaic), captions));

  json skipped = json::array();
  for (const auto& [index, reason] : stats.skipped) skipped.push_back({{"image", source->Name(index)}, {"reason", reason}});
  const bool class_target = probe.Find(m.layers[0]).shape.size() == 2;
  if (m.seed_from == "auto") m.seed_from = class_target ? "position" : "max";  // the report gives what ran
  m.decode_threads = DecodeThreads(m.decode_threads, model->device());
  json report = ReportHeader("deconv", *model, global.seed);
  report["options"] = ToJson(options);
  report["coordinates"] = "position: row, column in the layer's feature map; box: [y0, x0, y1, x1) in pixels of the "
                          "image resized to the model input (" + std::to_string(spec.height) + "x" +
                          std::to_string(spec.width) + "), may extend past the border";
  report["rule_coverage"] = coverage_report;
  report["images_scanned"] = stats.images;
  report["images_skipped"] = skipped.size();
  report["skipped"] = skipped;
  const auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  report["timings"] = {{"scan_seconds", seconds(start, scanned)},
                       {"scan_images_per_second", stats.images / std::max(1e-9, stats.seconds)},
                       {"project_seconds", seconds(scanned, projected)},
                       {"total_seconds", seconds(start, std::chrono::steady_clock::now())}};
  report["units"] = records;
  out.Finish(report);
  Log()->info("wrote {} unit figure(s) to {}", units.size(), options.out);
}

std::function<void()> AddDeconvCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<DeconvCommandOptions>();
  DeconvOptions& m = options->method;
  CLI::App* command = app.add_subcommand(
      "deconv", "DeconvNet: each unit's top dataset images and their projections back to pixel space");
  AddModelOptions(*command, options->model);
  command->add_option("-l,--layer,--layers", options->layers_text, "Layer(s), comma-separated, scanned in one pass")
      ->required();
  command->add_option("-u,--units", options->units_text, "Units of each layer: 0-15, 3,7 or all (default all)");
  command->add_option("--dataset", options->dataset, "Image folder (recursive) or Broden root (uses its images)");
  command->add_option("--image", options->image,
                      "One image (PNG/JPEG, or a float .npy [3,H,W] at the model's input size, see --npy-values): "
                      "the --units given, or its --top strongest units of --layer, and their projections");
  AddNpyValuesOption(*command, options->npy_values);
  command->add_option("--top", m.top, "Images per unit (units per image with --image)")->capture_default_str();
  command->add_option("--rule", options->rule, "Backward rule: deconvnet (Zeiler & Fergus), guided or gradient")
      ->check(CLI::IsMember({"deconvnet", "guided", "gradient"}))
      ->capture_default_str();
  command->add_option("--seed-from", m.seed_from,
                      "What is back-propagated: max (the activation at its maximum, Zeiler & Fergus), map (the whole "
                      "map weighted by itself), sum (ones over the map, Captum's sum selector), position (one at "
                      "the maximum or at --position, Captum's index selector; for a class, its target=K), auto "
                      "(max; position for class outputs)")
      ->check(CLI::IsMember({"auto", "max", "map", "sum", "position"}))
      ->capture_default_str();
  command->add_option("--position", options->position_text,
                      "With --seed-from position: row,column in the layer's map (default: each image's maximum)");
  AddPrecisionOption(*command, m.scan_precision,
                     "the scan's forward pass; projections always run in float32");
  command->add_option("--batch", m.batch, "Images per forward pass; projections per backward pass")->capture_default_str();
  command->add_option("--max-images", m.max_images, "Scan at most this many images (0 = all)")->capture_default_str();
  command->add_option("--workers", m.decode_threads,
                      "Threads decoding images ahead of the scan, one batch each (0 = auto: 1 on a CPU, up to 8 on a "
                      "GPU)")
      ->capture_default_str();
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->add_flag("--save-arrays", options->save_arrays, "Also write raw projections as float32 .npy [3,H,W]");
  command->footer(
      "Outputs in --out: units/<layer>_<unit>.png (projections beside image patches, cropped to the unit's\n"
      "receptive field), grid.png (every unit's strongest projection), report.json (per unit its top images\n"
      "with activation, position and receptive-field box), arrays/*.npy with --save-arrays.\n"
      "Undecodable images are skipped with a warning and listed in the report.\n"
      "Examples:\n"
      "  cnnviz deconv --model models/tinycnn.pt --layer conv5 --units 0-15 --dataset dataset/concepts\n"
      "  cnnviz deconv --model alexnet.pt --layers conv3,conv5 --dataset photos/ --rule guided\n"
      "  cnnviz deconv --model models/tinycnn.pt --layer conv4 --image cat.png --top 9\n"
      "  cnnviz deconv --model resnet18.pt --layer fc --units 281 --image cat.png --rule gradient   (saliency)\n"
      "  cnnviz deconv --model resnet18.pt --layer fc --units 281 --dataset photos/ --rule guided\n"
      "--layer may be a class output [N,C] (e.g. fc): its units are classes, projected with seed 1 (Captum's\n"
      "target=K) by default.");
  return [options, &global, command]() {
    if (!command->parsed()) return;
    options->units_given = command->count("--units") > 0;
    RunDeconv(*options, global);
  };
}

}  // namespace cnnviz::app
