#include "cnnviz/dissect_command.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iomanip>
#include <map>
#include <sstream>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/core/workers.h"
#include "cnnviz/io/atomic_file.h"
#include "cnnviz/io/crop.h"
#include "cnnviz/io/figures.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/report.h"
#include "cnnviz/options_json.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"
#include "cnnviz/viewer.h"

namespace cnnviz::app {
using nlohmann::json;

namespace {

// NetDissect-Lite's tally.csv: unit, category, label, score, then per category
// <cat>-label, <cat>-truth, <cat>-activation, <cat>-intersect, <cat>-iou, with one column added after
// unit: channel. `unit` is 1-based as there; `channel` is the 0-based channel index that --units, the
// report, the page and the PNG names use. Counts and scores are written as NetDissect-Lite's csv module
// writes its float64s (1234.0; shortest round-trip digits), rows by score descending, equal scores by
// channel.
std::string TallyCsv(const LayerDissection& layer, const SegmentationSource& source) {
  const auto& categories = source.categories();
  const auto& labels = source.labels();
  std::ostringstream csv;
  csv << "unit,channel,category,label,score";
  for (const auto& category : categories) {
    csv << ',' << category << "-label," << category << "-truth," << category << "-activation," << category
        << "-intersect," << category << "-iou";
  }
  csv << '\n';
  std::vector<const UnitDissection*> order;
  for (const auto& unit : layer.units) order.push_back(&unit);
  std::stable_sort(order.begin(), order.end(), [](auto a, auto b) { return a->best.iou > b->best.iou; });
  for (const UnitDissection* unit : order) {
    const auto count = [](const at::Tensor& value) { return PythonFloat(static_cast<double>(value.item<int64_t>())); };
    csv << unit->unit + 1 << ',' << unit->unit << ',' << (unit->category >= 0 ? categories[unit->category] : "") << ','
        << (unit->best.label ? labels[unit->best.label].name : "") << ',' << PythonFloat(unit->best.iou);
    for (size_t c = 0; c < categories.size(); ++c) {
      const LabelScore& best = unit->per_category[c];
      csv << ',' << (best.label ? labels[best.label].name : "") << ',' << count(layer.label_area[best.label]) << ','
          << count(layer.activated_area[unit->unit][static_cast<int64_t>(c)]) << ','
          << count(layer.intersection[unit->unit][best.label]) << ',' << PythonFloat(best.iou);
    }
    csv << '\n';
  }
  return csv.str();
}

// Per unit a strip of its top images (tile x tile) with its mask outlined, written by every core in
// parallel: decoding and PNG encoding dominate and are independent per unit.
constexpr int64_t kTileSide = 112;
// Runs `work(i)` for i in [0, count) on the usable cores (at most 4), without autograd; rethrows the first
// failure.
void ParallelFor(size_t count, const std::function<void(size_t)>& work) {
  Workers workers(std::min(4, UsableCores()));
  workers.Run(static_cast<int64_t>(count), [&](int64_t i) {
    at::NoGradGuard no_grad;
    work(static_cast<size_t>(i));
  });
}

// Per unit, its top images side by side with the activation mask outlined, at `tile` pixels. Top images
// are shared by many units, so each distinct image is decoded and shrunk once (kept as uint8 tiles), and
// masks are upsampled straight to the tile size.
// Each strip has a heading (layer, unit, label, category, IoU) and each image its name and activation.
void WriteUnitFigures(const SegmentationSource& source, const LayerDissection& layer, const std::string& shown_name,
                      const std::string& folder, int64_t tile, int64_t height, int64_t width, double iou_threshold) {
  std::map<int64_t, at::Tensor> tiles;
  for (const auto& unit : layer.units) {
    for (const auto& entry : unit.top_images) tiles.emplace(entry.first, at::Tensor());
  }
  std::vector<std::map<int64_t, at::Tensor>::iterator> slots;
  for (auto it = tiles.begin(); it != tiles.end(); ++it) slots.push_back(it);
  ParallelFor(slots.size(), [&](size_t i) {
    at::Tensor image = source.Load(static_cast<size_t>(slots[i]->first));
    image = at::upsample_bilinear2d(image.unsqueeze(0), {height, width}, false).squeeze(0);
    slots[i]->second = ResizeSquare(image, tile).mul(255.0).round_().to(at::kByte);
  });
  ParallelFor(layer.units.size(), [&](size_t u) {
    const UnitDissection& unit = layer.units[u];
    std::vector<at::Tensor> shown;
    std::vector<std::string> captions;
    for (size_t r = 0; r < unit.top_images.size(); ++r) {
      const at::Tensor image = tiles.at(unit.top_images[r].first).to(at::kFloat).div(255.0);
      const at::Tensor mask = NetworkDissection::TopImageMask(layer, unit.unit, static_cast<int64_t>(r), tile, tile);
      shown.push_back(OutlineMask(image, mask));
      char activation[32];
      std::snprintf(activation, sizeof(activation), "act %.3g\n", unit.top_images[r].second);
      captions.push_back(activation +
                         std::filesystem::path(source.Name(static_cast<size_t>(unit.top_images[r].first))).filename().string());
    }
    if (!shown.empty()) {
      const auto& labels = source.labels();
      char heading[256];
      if (unit.best.label > 0) {
        std::snprintf(heading, sizeof(heading), "%s unit %lld: %s (%s), IoU %.3f%s", shown_name.c_str(),
                      static_cast<long long>(unit.unit), labels[unit.best.label].name.c_str(),
                      unit.category >= 0 ? source.categories()[unit.category].c_str() : "",
                      unit.best.iou, unit.best.iou > iou_threshold ? "" : " (below the detector threshold)");
      } else {
        std::snprintf(heading, sizeof(heading), "%s unit %lld: no label", shown_name.c_str(), static_cast<long long>(unit.unit));
      }
      WritePng(folder + "/unit_" + std::to_string(unit.unit) + ".png",
               AddHeading(MakeGrid(at::stack(shown), captions, static_cast<int64_t>(shown.size())), heading));
    }
  });
}

}  // namespace

void RunDissect(DissectCommandOptions options, const GlobalOptions& global) {
  const auto start = std::chrono::steady_clock::now();
  DissectionOptions& m = options.method;
  options.dataset_options.categories = SplitList(options.categories_text);
  std::shared_ptr<Model> model = LoadModel(options.model, global);
  const std::unique_ptr<Probe> probe_owner = MakeProbe(model);
  Probe& probe = *probe_owner;
  if (options.layers_text == "all-conv") {
    m.layers = ConvolutionLayers(probe, "--layers all-conv");
  } else {
    m.layers = SplitList(options.layers_text);
  }
  m.activated_area = options.activated_area == "present" ? ActivatedArea::kPresent : ActivatedArea::kCovered;
  for (const auto& file : SplitList(options.thresholds_text)) m.thresholds.push_back(ReadNpy(file, "thresholds"));
  m.Check();
  const std::string root = ResolveBrodenRoot(options.dataset);
  std::unique_ptr<SegmentationSource> source = OpenBroden(root, options.dataset_options);
  Log()->info("dissecting {} layer(s) over {} images of {}", m.layers.size(), source->size(), root);
  if (source->unlabelled_images()) {
    Log()->info("left out {} image(s) with no label in the chosen categories (as NetDissect-Lite)",
                source->unlabelled_images());
  }

  const OutputFolder out(options.out);
  NetworkDissection method(probe);
  const std::string layers_named = std::to_string(m.layers.size()) + " layer(s)";
  ProgressReporter reporter(m.thresholds.empty() ? "dissect pass 1/2 (thresholds)" : "dissect tally pass (thresholds given)",
                            "images");
  int current_pass = 1;
  DissectionResult result = method.Run(*source, m, [&](int pass, size_t done, size_t total) {
    if (pass != current_pass) {
      current_pass = pass;
      reporter.Restart("dissect pass 2/2 (tally)");
    }
    reporter.Update(static_cast<int64_t>(done), static_cast<int64_t>(total), -1, layers_named);
  });
  for (const auto& [index, reason] : result.skipped) Log()->warn("skipped {}", reason);

  const auto& categories = source->categories();
  const auto& labels = source->labels();
  const InputSpec& spec = model->input_spec();

  json layers = json::array();
  for (const LayerDissection& layer : result.layers) {
    const std::string shown_name = DisplayLayer(probe, layer.name);
    const std::string folder = SafeFileName(shown_name);
    WriteFileAtomic(out.File(folder + "/tally.csv"), TallyCsv(layer, *source));

    // Detectors per concept, grouped by category.
    std::map<int64_t, int64_t> per_label;
    for (const auto& unit : layer.units) {
      if (unit.best.iou > m.iou_threshold && unit.best.label > 0) ++per_label[unit.best.label];
    }
    std::vector<Bar> bars;
    for (const auto& [label, count] : per_label) {
      bars.push_back({labels[label].name, static_cast<double>(count), static_cast<int>(labels[label].category)});
    }
    std::stable_sort(bars.begin(), bars.end(), [](const Bar& a, const Bar& b) { return a.value > b.value; });
    WritePng(out.File(folder + "/detectors.png"),
             BarChart(shown_name + ": " + std::to_string(layer.detectors) + " detectors", bars, categories));

    json summary = json::object();
    for (size_t c = 0; c < categories.size(); ++c) {
      summary[categories[c]] = {{"detectors", layer.detectors_per_category[c]}, {"unique_concepts", layer.unique_concepts[c]}};
    }

    std::vector<const UnitDissection*> order;
    for (const auto& unit : layer.units) order.push_back(&unit);
    std::stable_sort(order.begin(), order.end(), [](auto a, auto b) { return a->best.iou > b->best.iou; });
    WriteUnitFigures(*source, layer, shown_name, out.Folder(folder + "/units"),
                     std::min<int64_t>(spec.height, kTileSide), spec.height, spec.width, m.iou_threshold);
    json units = json::array();
    for (const UnitDissection* unit : order) {
      json top = json::array();
      for (const auto& [image_index, activation] : unit->top_images) {
        top.push_back({{"image", source->Name(static_cast<size_t>(image_index))}, {"activation", activation}});
      }
      const std::string figure = folder + "/units/unit_" + std::to_string(unit->unit) + ".png";
      json best_per_category = json::object();
      for (size_t c = 0; c < categories.size(); ++c) {
        const LabelScore& best = unit->per_category[c];
        best_per_category[categories[c]] = {{"label", best.label ? labels[best.label].name : ""}, {"iou", best.iou}};
      }
      const std::string label = unit->best.label ? labels[unit->best.label].name : "";
      const std::string category = unit->category >= 0 ? categories[unit->category] : "";
      units.push_back({{"unit", unit->unit},
                       {"tally_unit", unit->unit + 1},
                       {"label", label},
                       {"category", category},
                       {"iou", unit->best.iou},
                       {"detector", unit->best.iou > m.iou_threshold && unit->best.label > 0},
                       {"threshold", unit->threshold},
                       {"best_per_category", best_per_category},
                       {"top_images", top},
                       {"figure", figure}});
    }
    if (options.save_arrays) {
      WriteNpy(out.File(folder + "/thresholds.npy"), layer.thresholds);
      WriteNpy(out.File(folder + "/intersection.npy"), layer.intersection);
      WriteNpy(out.File(folder + "/label_area.npy"), layer.label_area);
      WriteNpy(out.File(folder + "/activated_area.npy"), layer.activated_area);
      WriteNpy(out.File(folder + "/iou.npy"), layer.iou);
    }
    layers.push_back({{"name", layer.name},
                      {"display", shown_name},
                      {"units_total", layer.units.size()},
                      {"detectors", layer.detectors},
                      {"categories", summary},
                      {"tally", folder + "/tally.csv"},
                      {"chart", folder + "/detectors.png"},
                      {"units", units}});
  }

  json skipped = json::array();
  for (const auto& [index, reason] : result.skipped) skipped.push_back({{"image", source->Name(index)}, {"reason", reason}});
  json report = ReportHeader("dissect", *model, global.seed);
  json label_table = json::array();
  for (const auto& label : labels) {
    if (label.number == 0) continue;
    label_table.push_back({{"number", label.number},
                           {"name", label.name},
                           {"category", label.category >= 0 ? categories[label.category] : ""}});
  }
  report["unit_numbering"] =
      "'unit' is the 0-based channel index (as --units takes it, and unit_<k>.png); 'tally_unit' and tally.csv's "
      "'unit' column are 1-based as NetDissect-Lite's; tally.csv's 'channel' column is 0-based";
  options.dataset = root;
  options.dataset_options.categories = categories;
  m.decode_threads = DecodeThreads(m.decode_threads, model->device());
  report["options"] = ToJson(options);
  report["precision"] = {{"forward", ToString(m.precision)},
                         {"cpu_bf16", CpuBf16Flag()},
                         {"exact", "thresholds, tallies and IoUs in float32 or wider, from float32 maps"}};
  report["method"] = {
      {"threshold", m.thresholds.empty()
                        ? "exact: the activation of rank ceil(quantile * values) from the top, per unit"
                        : "given (--thresholds), rounded down to float32; no quantile pass"},
      {"upsampling", "bilinear, align_corners=false, to the segmentation size (as NetDissect-Lite)"},
      {"primary_category", source->primary_rule() + "; its activated area is the IoU's"},
      {"activated_area", m.activated_area == ActivatedArea::kCovered
                             ? "|M_k| added to a category when M_k covers a labelled pixel of that primary category, "
                               "or the image has an image-level label of it (NetDissect-Lite)"
                             : "|M_k| added to every category the image has labels in (--activated-area present)"},
      {"ties", "within a category the lower label number; across categories the later category (NetDissect-Lite)"},
      {"image_level_labels", "full-image masks"},
      {"images_without_labels", "left out (NetDissect-Lite's index_has_any_data)"},
      {"multiple_masks", m.union_maps ? "several PNGs of one category are unioned per label (--union-maps)"
                                      : "every PNG counts, a label in two maps at one pixel twice (NetDissect-Lite)"}};
  report["images_left_out_unlabelled"] = source->unlabelled_images();
  report["labels"] = label_table;
  report["images"] = result.images;
  report["images_from_cache"] = result.cached_images;
  report["cache_mb_used"] = static_cast<double>(result.cache_bytes) / (1024.0 * 1024.0);
  report["images_skipped"] = skipped.size();
  report["skipped"] = skipped;
  report["timings"] = {{"threshold_pass_seconds", result.threshold_seconds},
                       {"tally_pass_seconds", result.tally_seconds},
                       {"total_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
  report["layers"] = layers;
  report["dataset"] = {{"path", root}, {"kind", "broden"}, {"images", result.images}, {"categories", categories}};
  report["iou_threshold"] = m.iou_threshold;
  WriteViewer(out, report);
  out.Finish(report);
  Log()->info("wrote {} (open index.html)", options.out);
}

std::function<void()> AddDissectCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<DissectCommandOptions>();
  DissectionOptions& m = options->method;
  CLI::App* command = app.add_subcommand(
      "dissect", "Network dissection: score every unit against the pixel-labelled concepts of a Broden dataset");
  AddModelOptions(*command, options->model);
  command->add_option("--dataset", options->dataset,
                      "Broden-format root (index.csv, label.csv, images/); 'broden' = $CNNVIZ_BRODEN or "
                      "./dataset/broden1_224")
      ->capture_default_str();
  command->add_option("-l,--layers", options->layers_text, "Layers, comma-separated, or all-conv (every Conv2d output)")
      ->capture_default_str();
  command->add_option("--split", options->dataset_options.split, "train, val or all")
      ->check(CLI::IsMember({"train", "val", "all"}))
      ->capture_default_str();
  command->add_option("--quantile", m.quantile, "Top activation quantile defining each unit's mask")->capture_default_str();
  command->add_option("--iou-threshold", m.iou_threshold, "IoU above which a unit is a detector")->capture_default_str();
  command->add_option("--categories", options->categories_text,
                      "Only these categories, e.g. color,object; 'ndl' = NetDissect-Lite's default set (all but "
                      "material). Default: every category that category.csv lists, as in Bau et al.");
  command->add_option("--thresholds", options->thresholds_text,
                      "Per-unit thresholds, one .npy per layer in --layers order (e.g. NetDissect-Lite's "
                      "quantile.npy or a cnnviz thresholds.npy): skips the quantile pass")
      ->capture_default_str();
  command->add_option("--activated-area", options->activated_area,
                      "Which images add a unit's mask to a category's activated area: covered (the mask covers a "
                      "label of that category, as NetDissect-Lite) or present (the image has labels of it)")
      ->check(CLI::IsMember({"covered", "present"}))
      ->capture_default_str();
  command->add_flag("--union-maps", m.union_maps,
                    "Union the label maps of one category, so a label in two maps at one pixel counts once "
                    "(NetDissect-Lite counts it twice)");
  AddPrecisionOption(*command, m.precision,
                     "the network's forward pass; thresholds and tallies stay float32");
  command->add_option("--batch", m.batch, "Images per forward pass")->capture_default_str();
  command->add_option("--max-images", options->dataset_options.max_images, "Use at most this many images (0 = all)")
      ->capture_default_str();
  command->add_option("--cache-mb", m.cache_mb,
                      "Keep first-pass activations in memory up to this many MiB so the second pass skips the "
                      "network for them (0 = off)")
      ->capture_default_str();
  command->add_option("--workers", m.decode_threads,
                      "Threads decoding images and masks ahead of the network, one batch each (0 = auto: 1 on a "
                      "CPU, up to 8 on a GPU)")
      ->capture_default_str();
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->add_flag("--save-arrays", options->save_arrays,
                    "Also write per layer thresholds, intersection, label_area, activated_area and iou as .npy");
  command->footer(
      "Outputs in --out: index.html (the viewer: open it in a browser; data.js holds the report for it),\n"
      "report.json (per unit label, category, IoU,\n"
      "threshold, best label per category; per layer detectors and unique concepts per category), and per\n"
      "layer <layer>/tally.csv (NetDissect-Lite columns plus channel), <layer>/detectors.png,\n"
      "<layer>/units/unit_<k>.png. Units are channels numbered from 0 everywhere but tally.csv's unit column\n"
      "(1-based, as NetDissect-Lite; its channel column is 0-based).\n"
      "Rules follow NetDissect-Lite (activated area, primary category by coverage, ties, images without\n"
      "labels left out); thresholds are exact rather than its quantile sketch. See README, 'Compared with\n"
      "Captum and NetDissect-Lite'.\n"
      "Images whose image or masks are missing or corrupt are skipped with a warning and listed in the report.\n"
      "Examples:\n"
      "  cnnviz dissect --model models/tinycnn.pt --dataset dataset/concepts --layers conv3,conv4,conv5\n"
      "  cnnviz dissect --model resnet18.pt --dataset broden --layers layer4 --split val\n"
      "  cnnviz dissect --model resnet18.pt --dataset broden --layers layer4 --categories ndl \\\n"
      "      --thresholds ndl_result/quantile.npy");
  return [options, &global, command]() {
    if (command->parsed()) RunDissect(*options, global);
  };
}

}  // namespace cnnviz::app
