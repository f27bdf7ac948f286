#include "cnnviz/atlas_command.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/core/workers.h"
#include "cnnviz/io/atomic_file.h"
#include "cnnviz/io/broden.h"
#include "cnnviz/io/crop.h"
#include "cnnviz/io/figures.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/io/layers_report.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/report.h"
#include "cnnviz/methods/activation_maximization.h"
#include "cnnviz/methods/dataset_scan.h"
#include "cnnviz/methods/deconvnet.h"
#include "cnnviz/methods/embedding.h"
#include "cnnviz/methods/network_dissection.h"
#include "cnnviz/methods/network_inversion.h"
#include "cnnviz/options_json.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"
#include "cnnviz/viewer.h"

namespace cnnviz::app {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kHistogramBins = 20;
constexpr int64_t kMinCrop = 64, kMaxCrop = 160;

// The first `limit` images of a source (all when 0).
class FirstImages : public ImageSource {
 public:
  FirstImages(std::unique_ptr<ImageSource> source, size_t limit) : source_(std::move(source)), limit_(limit) {}
  size_t size() const override { return limit_ ? std::min(limit_, source_->size()) : source_->size(); }
  std::string Name(size_t index) const override { return source_->Name(index); }
  at::Tensor Load(size_t index) const override { return source_->Load(index); }

 private:
  std::unique_ptr<ImageSource> source_;
  size_t limit_;
};

// Finished stages, recorded in <out>/stages/: `run.json` holds what the results depend on (options,
// model file, dataset), and each finished stage's data is `<stage>.json`, written after its files. A
// re-run with the same inputs skips the stages recorded; changed inputs (or --restart) start over.
class StageLog {
 public:
  StageLog(const OutputFolder& out, const json& inputs, bool restart) : out_(out) {
    const std::string run = out.File("stages/run.json");
    bool same = false;
    if (!restart && fs::exists(run)) {
      try {
        std::ifstream in(run);
        same = json::parse(in) == inputs;
      } catch (const std::exception&) {
        same = false;
      }
      if (!same) Log()->info("the options, model or dataset changed since the last run in {}: starting over", out.path());
    }
    if (!same) {
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(out.Folder("stages"), ec)) fs::remove(entry.path(), ec);
      WriteJson(run, inputs);
    }
  }

  std::optional<json> Done(const std::string& stage) {
    const fs::path file = fs::path(out_.path()) / "stages" / (SafeFileName(stage) + ".json");
    if (!fs::exists(file)) return std::nullopt;
    try {
      std::ifstream in(file);
      json record = json::parse(in);
      summary_.push_back({{"name", stage}, {"seconds", record.at("seconds")}, {"resumed", true}});
      return record.at("data");
    } catch (const std::exception&) {
      return std::nullopt;  // unreadable: run the stage again
    }
  }

  void Record(const std::string& stage, const json& data, double seconds) {
    WriteJson(out_.File("stages/" + SafeFileName(stage) + ".json"), {{"seconds", seconds}, {"data", data}});
    summary_.push_back({{"name", stage}, {"seconds", seconds}, {"resumed", false}});
  }

  const json& summary() const { return summary_; }

 private:
  const OutputFolder& out_;
  json summary_ = json::array();
};

// Runs `stage` unless the log has it; returns its data either way. Announces "stage i/n".
json RunStage(StageLog& log, const std::string& stage, size_t index, size_t count,
              const std::function<json()>& work) {
  if (std::optional<json> done = log.Done(stage)) {
    Log()->info("atlas stage {}/{} {}: finished earlier, kept", index, count, stage);
    return *done;
  }
  Log()->info("atlas stage {}/{} {}", index, count, stage);
  const auto start = std::chrono::steady_clock::now();
  json data = work();
  log.Record(stage, data, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return data;
}

std::vector<std::string> AtlasLayers(const Probe& probe, const std::string& text) {
  if (text == "all-conv") return ConvolutionLayers(probe, "--layers all-conv");
  if (text == "aliases") {
    std::vector<std::string> layers;
    for (const LayerInfo& layer : probe.layers()) {
      if (!layer.alias.empty() && layer.shape.size() == 4 && layer.units > 0) layers.push_back(layer.alias);
    }
    if (!layers.empty()) return layers;
    Log()->info("the sidecar names no spatial layer (aliases): using every convolution (--layers all-conv)");
    return ConvolutionLayers(probe, "--layers aliases");
  }
  std::vector<std::string> layers = SplitList(text);
  if (layers.empty()) throw UsageError("--layers names no layer");
  for (const auto& name : layers) {
    const LayerInfo& info = probe.FindUnits(name);
    if (info.shape.size() != 4) {
      throw UsageError("layer '" + name + "' has no spatial extent: the atlas needs convolutional feature maps");
    }
  }
  return layers;
}

json FieldJson(const ReceptiveField& field) {
  return {{"size", {field.size[0], field.size[1]}},
          {"stride", {field.stride[0], field.stride[1]}},
          {"offset", {field.offset[0], field.offset[1]}},
          {"global", field.global},
          {"method", field.measured ? "measured" : "analytic"}};
}

// The input-pixel box a unit's crop shows: its receptive field at (y, x), widened to at least a third
// of the image around the same centre (a 3x3 field alone shows nothing recognizable), or the whole
// image for global fields.
void CropBoxOf(const LayerInfo& layer, const InputSpec& spec, int64_t y, int64_t x, int64_t box[4]) {
  box[0] = 0;
  box[1] = 0;
  box[2] = spec.height;
  box[3] = spec.width;
  const ReceptiveField& field = layer.receptive_field;
  if (field.global || field.size[0] >= spec.height * 2) return;
  field.Box(y, x, box);
  // A field as large as the image (or larger) shows the image, not padding around it.
  const int64_t image_size[2] = {spec.height, spec.width};
  for (int a = 0; a < 2; ++a) {
    if (box[a + 2] - box[a] >= image_size[a]) {
      box[a] = 0;
      box[a + 2] = image_size[a];
    }
  }
  const int64_t least[2] = {std::max<int64_t>(32, spec.height / 3), std::max<int64_t>(32, spec.width / 3)};
  for (int a = 0; a < 2; ++a) {
    const int64_t size = box[a + 2] - box[a];
    if (size >= least[a]) continue;
    const int64_t grow = least[a] - size;
    box[a] -= grow / 2;
    box[a + 2] += grow - grow / 2;
  }
}

int64_t CropSide(const LayerInfo& layer, const InputSpec& spec) {
  int64_t box[4];
  CropBoxOf(layer, spec, 0, 0, box);
  return std::clamp<int64_t>(std::max(box[2] - box[0], box[3] - box[1]), kMinCrop, kMaxCrop);
}

json Histogram(const at::Tensor& peaks) {  // peaks [N] with NaN for images not scanned
  const at::Tensor values = peaks.masked_select(peaks.isfinite()).to(at::kDouble);
  if (values.numel() == 0) return {{"edges", json::array()}, {"counts", json::array()}};
  double low = values.min().item<double>(), high = values.max().item<double>();
  if (high <= low) high = low + 1e-6;
  const at::Tensor counts = at::histc(values, kHistogramBins, low, high).to(at::kLong);
  json edges = json::array();
  for (int64_t b = 0; b <= kHistogramBins; ++b) edges.push_back(low + (high - low) * b / kHistogramBins);
  json list = json::array();
  for (int64_t b = 0; b < kHistogramBins; ++b) list.push_back(counts[b].item<int64_t>());
  return {{"edges", edges}, {"counts", list}};
}

// Images decoded once at the model's input size, shared by the crops of many units.
std::map<size_t, at::Tensor> LoadImages(const ImageSource& source, const std::set<size_t>& wanted, const InputSpec& spec) {
  std::map<size_t, at::Tensor> images;
  for (size_t index : wanted) images.emplace(index, at::Tensor());
  std::vector<std::map<size_t, at::Tensor>::iterator> slots;
  for (auto it = images.begin(); it != images.end(); ++it) slots.push_back(it);
  Workers workers(std::min(4, UsableCores()));
  workers.Run(static_cast<int64_t>(slots.size()), [&](int64_t i) {
    at::NoGradGuard no_grad;
    at::Tensor image = source.Load(slots[static_cast<size_t>(i)]->first);
    slots[static_cast<size_t>(i)]->second =
        at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false).squeeze(0);
  });
  return images;
}

std::string Fixed(double value, int digits) {
  char text[48];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

}  // namespace

void RunAtlas(AtlasCommandOptions options, const GlobalOptions& global) {
  const auto start = std::chrono::steady_clock::now();
  if (options.images < 0) throw UsageError("--images must be >= 0 (0 = all)");
  if (options.steps < 1) throw UsageError("--steps must be at least 1");
  if (options.top < 1) throw UsageError("--top must be at least 1");
  if (options.samples < 0) throw UsageError("--samples must be >= 0");
  if (options.grid < 1 || options.grid > 64) throw UsageError("--grid must be in [1, 64]");
  if (options.min_count < 1) throw UsageError("--min-count must be at least 1");
  if (options.diversity < 1) throw UsageError("--diversity must be at least 1");
  if (options.max_units < 0) throw UsageError("--max-units must be >= 0 (0 = all)");
  if (options.inversions < 0) throw UsageError("--inversions must be >= 0");
  if (options.inversion_steps < 1) throw UsageError("--inversion-steps must be at least 1");
  if (options.batch < 1) throw UsageError("--batch must be at least 1");
  if (options.decode_threads < 0) throw UsageError("--workers must be >= 0");

  std::shared_ptr<Model> model = LoadModel(options.model, global);
  const std::unique_ptr<Probe> probe_owner = MakeProbe(model);
  const Probe& probe = *probe_owner;
  const InputSpec& spec = model->input_spec();
  const std::vector<std::string> layers = AtlasLayers(probe, options.layers_text);
  std::vector<const LayerInfo*> infos;
  std::vector<std::string> shown;  // display names, also the folder names
  for (const auto& layer : layers) {
    infos.push_back(&probe.FindUnits(layer));
    shown.push_back(SafeFileName(DisplayLayer(probe, layer)));
  }

  // The dataset: a Broden root gives dissection; any other folder of images gives everything else.
  // "broden" is the default Broden location, as for dissect.
  if (options.dataset == "broden") options.dataset = ResolveBrodenRoot(options.dataset);
  const bool broden = fs::exists(fs::path(options.dataset) / "index.csv");
  std::unique_ptr<SegmentationSource> segmentation;
  std::unique_ptr<ImageSource> plain;
  if (broden) {
    BrodenOptions dataset_options;
    dataset_options.max_images = static_cast<size_t>(options.images);
    segmentation = OpenBroden(options.dataset, dataset_options);
  } else {
    plain = std::make_unique<FirstImages>(OpenImageDataset(options.dataset), static_cast<size_t>(options.images));
  }
  const ImageSource& source = broden ? static_cast<const ImageSource&>(*segmentation) : *plain;
  if (source.size() == 0) throw InputError("the dataset '" + options.dataset + "' holds no images");

  // Class outputs: a model whose output is [1, C] with C > 1.
  int64_t classes = 0;
  {
    at::NoGradGuard no_grad;
    ViewSpec view{{}, true};
    const at::Tensor output = probe.Run(view, model->Preprocess(at::full({1, 3, spec.height, spec.width}, 0.5,
                                                                         at::TensorOptions().device(model->device()))))
                                  .output;
    if (output.defined() && output.dim() == 2 && output.size(1) > 1) classes = output.size(1);
  }
  std::vector<int64_t> chosen_classes;
  if (options.classes == "all") {
    for (int64_t k = 0; k < std::min<int64_t>(classes, 100); ++k) chosen_classes.push_back(k);
    if (classes > 100) Log()->warn("the model has {} classes: showing the first 100 (choose with --classes)", classes);
  } else if (options.classes != "none") {
    chosen_classes = ParseUnits(options.classes);
    if (classes == 0) throw UsageError("--classes: the model has no class output ([1, C] logits)");
    for (int64_t k : chosen_classes) {
      if (k < 0 || k >= classes) {
        throw UsageError("--classes: class " + std::to_string(k) + " is out of range (0-" + std::to_string(classes - 1) + ")");
      }
    }
  }

  const OutputFolder out(options.out);
  // The page of an earlier run must not point at files this run rewrites: it reappears when this run ends.
  for (const char* name : {"data.js", "atlas.json"}) {
    std::error_code ec;
    fs::remove(fs::path(options.out) / name, ec);
  }
  std::error_code size_error;
  const auto model_bytes = fs::file_size(options.model.path, size_error);
  const json inputs = {{"options", [&] {
                          json o = ToJson(options);
                          o.erase("restart");
                          o.erase("out");
                          return o;
                        }()},
                       {"seed", global.seed},
                       {"model_bytes", size_error ? 0 : static_cast<int64_t>(model_bytes)},
                       {"dataset_images", source.size()},
                       {"device", model->device().str()}};
  StageLog log(out, inputs, options.restart);
  json warnings = json::array();

  // Stage list, for "stage i/n".
  std::vector<std::string> stage_names = {"scan"};
  for (const auto& name : shown) stage_names.push_back("deconv " + name);
  for (const auto& name : shown) stage_names.push_back("actmax " + name);
  if (options.samples > 0) {
    for (const auto& name : shown) stage_names.push_back("atlas " + name);
  }
  if (options.inversions > 0) stage_names.push_back("invert");
  if (!chosen_classes.empty()) stage_names.push_back("classes");
  size_t stage_index = 0;
  const auto next = [&](const std::string& name) {
    ++stage_index;
    return std::make_pair(name, stage_index);
  };

  // Stage: the one pass over the dataset. Dissection (Broden) or a plain scan, with the consumers for
  // top images, per-image peaks and activation samples.
  const int64_t per_image =
      options.samples > 0 ? std::max<int64_t>(1, (options.samples + static_cast<int64_t>(source.size()) - 1) /
                                                     static_cast<int64_t>(source.size()))
                          : 1;
  const auto [scan_name, scan_index] = next("scan");
  const json scan = RunStage(log, scan_name, scan_index, stage_names.size(), [&] {
    TopActivations top(options.top);
    PeakActivations peaks;
    ActivationSamples samples(std::max<int64_t>(options.samples, 1), per_image, global.seed);
    std::vector<ScanConsumer*> consumers = {&top, &peaks};
    if (options.samples > 0) consumers.push_back(&samples);
    std::optional<DissectionResult> dissection;
    json dataset = {{"path", options.dataset}, {"kind", broden ? "broden" : "images"}};
    json skipped = json::array();
    ProgressReporter reporter(broden ? "atlas scan + dissection pass 1/2" : "atlas scan", "images");
    if (broden) {
      DissectionOptions m;
      m.layers = layers;
      m.batch = options.batch;
      m.top_images = options.top;
      m.decode_threads = options.decode_threads;
      m.precision = options.precision;
      int current = 1;
      dissection = NetworkDissection(probe).Run(
          *segmentation, m,
          [&](int pass, size_t done, size_t total) {
            if (pass != current) {
              current = pass;
              reporter.Restart("atlas dissection pass 2/2 (tally)");
            }
            reporter.Update(static_cast<int64_t>(done), static_cast<int64_t>(total));
          },
          consumers);
      for (const auto& [index, reason] : dissection->skipped) skipped.push_back({{"image", source.Name(index)}, {"reason", reason}});
      dataset["images"] = dissection->images;
      dataset["categories"] = segmentation->categories();
    } else {
      ScanOptions m;
      m.layers = layers;
      m.batch = options.batch;
      m.decode_threads = options.decode_threads;
      m.precision = options.precision;
      const ScanSummary summary = ScanImages(probe, source, m, consumers, [&](size_t done, size_t total) {
        reporter.Update(static_cast<int64_t>(done), static_cast<int64_t>(total));
      });
      for (const auto& [index, reason] : summary.skipped) skipped.push_back({{"image", source.Name(index)}, {"reason", reason}});
      dataset["images"] = summary.images;
      dataset["categories"] = json::array();
    }
    dataset["skipped"] = skipped;

    // Crops of every unit's top images (mask outlined where dissection ran), written in parallel.
    std::set<size_t> wanted;
    std::vector<std::vector<UnitTop>> tops;
    for (size_t l = 0; l < layers.size(); ++l) {
      tops.push_back(top.Units(l));
      for (const UnitTop& unit : tops.back()) {
        for (const TopActivation& entry : unit.top) wanted.insert(entry.image);
      }
    }
    const std::map<size_t, at::Tensor> images = LoadImages(source, wanted, spec);
    json layer_records = json::array();
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerInfo& info = *infos[l];
      const LayerDissection* dissected = dissection ? &dissection->layers[l] : nullptr;
      const int64_t side = CropSide(info, spec);
      std::vector<json> units(static_cast<size_t>(info.units));
      Workers workers(std::min(4, UsableCores()));
      workers.Run(info.units, [&](int64_t k) {
        at::NoGradGuard no_grad;
        const UnitTop& unit = tops[l][static_cast<size_t>(k)];
        json record = {{"unit", k}};
        json list = json::array();
        for (size_t r = 0; r < unit.top.size(); ++r) {
          const TopActivation& entry = unit.top[r];
          int64_t box[4];
          CropBoxOf(info, spec, entry.y, entry.x, box);
          at::Tensor image = images.at(entry.image);
          // Dissection's own top list ranks the same images (same maxima, same ties): its maps give the mask.
          if (dissected && r < dissected->units[static_cast<size_t>(k)].top_images.size() &&
              static_cast<size_t>(dissected->units[static_cast<size_t>(k)].top_images[r].first) == entry.image) {
            const at::Tensor mask =
                NetworkDissection::TopImageMask(*dissected, k, static_cast<int64_t>(r), spec.height, spec.width);
            image = OutlineMask(image, mask);
          }
          const std::string crop = "layers/" + shown[l] + "/top/u" + std::to_string(k) + "_r" + std::to_string(r) + ".png";
          WritePng(out.File(crop), ResizeSquare(CropBox(image, box, 0.5), side));
          list.push_back({{"image", source.Name(entry.image)},
                          {"index", entry.image},
                          {"activation", entry.activation},
                          {"y", entry.y},
                          {"x", entry.x},
                          {"box", {box[0], box[1], box[2], box[3]}},
                          {"crop", crop}});
        }
        record["top"] = list;
        const at::Tensor unit_peaks = peaks.Peaks(l).select(1, k);
        const at::Tensor finite = unit_peaks.masked_select(unit_peaks.isfinite());
        record["top_activation"] = finite.numel() ? finite.max().item<double>() : 0.0;
        record["mean_peak"] = finite.numel() ? finite.to(at::kDouble).mean().item<double>() : 0.0;
        record["histogram"] = Histogram(unit_peaks);
        if (dissected) {
          const UnitDissection& d = dissected->units[static_cast<size_t>(k)];
          const auto& labels = segmentation->labels();
          const auto& categories = segmentation->categories();
          record["label"] = d.best.label ? labels[d.best.label].name : "";
          record["category"] = d.category >= 0 ? categories[d.category] : "";
          record["iou"] = d.best.iou;
          record["detector"] = d.best.label > 0 && d.best.iou > DissectionOptions().iou_threshold;
          record["threshold"] = d.threshold;
          json best = json::object();
          for (size_t c = 0; c < categories.size(); ++c) {
            const LabelScore& s = d.per_category[c];
            best[categories[c]] = {{"label", s.label ? labels[s.label].name : ""}, {"iou", s.iou}};
          }
          record["best_per_category"] = best;
        } else {
          record["label"] = "";
          record["category"] = "";
          record["iou"] = 0.0;
          record["detector"] = false;
          record["best_per_category"] = json::object();
        }
        units[static_cast<size_t>(k)] = std::move(record);
      });
      json layer = {{"name", info.name}, {"units", units}};
      if (dissected) {
        json per_category = json::object();
        const auto& categories = segmentation->categories();
        for (size_t c = 0; c < categories.size(); ++c) {
          per_category[categories[c]] = {{"detectors", dissected->detectors_per_category[c]},
                                         {"unique_concepts", dissected->unique_concepts[c]}};
        }
        layer["detectors"] = dissected->detectors;
        layer["per_category"] = per_category;
      } else {
        layer["detectors"] = nullptr;
        layer["per_category"] = nullptr;
      }
      if (options.samples > 0) {
        WriteNpy(out.File("stages/samples_" + shown[l] + ".npy"), samples.Vectors(l));
      }
      layer_records.push_back(layer);
    }
    json sampled = json::array();
    if (options.samples > 0) {
      const at::Tensor places = samples.Places();
      for (size_t s = 0; s < samples.SampleImages().size(); ++s) {
        sampled.push_back({samples.SampleImages()[s], places[static_cast<int64_t>(s)][0].item<float>(),
                           places[static_cast<int64_t>(s)][1].item<float>()});
      }
    }
    return json{{"dataset", dataset}, {"layers", layer_records}, {"samples", sampled}};
  });

  // Stages: DeconvNet projections of every unit's top images, cropped as the images are.
  std::vector<json> deconv(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto [name, index] = next("deconv " + shown[l]);
    deconv[l] = RunStage(log, name, index, stage_names.size(), [&] {
      const LayerInfo& info = *infos[l];
      std::vector<UnitTop> units;
      for (const json& unit : scan["layers"][l]["units"]) {
        if (options.max_units > 0 && unit["unit"].get<int64_t>() >= options.max_units) break;
        UnitTop top;
        top.layer = info.name;
        top.unit = unit["unit"].get<int64_t>();
        for (const json& entry : unit["top"]) {
          top.top.push_back({entry["index"].get<size_t>(), entry["activation"].get<float>(), entry["y"].get<int64_t>(),
                             entry["x"].get<int64_t>()});
        }
        units.push_back(std::move(top));
      }
      DeconvOptions m;
      m.layers = {layers[l]};
      m.top = options.top;
      m.batch = options.batch;
      const std::vector<std::vector<at::Tensor>> projections = DeconvNet(probe).Project(source, units, m);
      const int64_t side = CropSide(info, spec);
      json files = json::array();
      Workers workers(std::min(4, UsableCores()));
      std::vector<json> per_unit(units.size());
      workers.Run(static_cast<int64_t>(units.size()), [&](int64_t u) {
        at::NoGradGuard no_grad;
        json list = json::array();
        const json& records = scan["layers"][l]["units"][static_cast<size_t>(u)]["top"];
        for (size_t r = 0; r < projections[static_cast<size_t>(u)].size(); ++r) {
          const auto box_json = records[r]["box"];
          const int64_t box[4] = {box_json[0], box_json[1], box_json[2], box_json[3]};
          const std::string file = "layers/" + shown[l] + "/deconv/u" + std::to_string(u) + "_r" + std::to_string(r) + ".png";
          WritePng(out.File(file),
                   ResizeSquare(CropBox(ProjectionToImage(projections[static_cast<size_t>(u)][r]), box, 0.5), side));
          list.push_back(file);
        }
        per_unit[static_cast<size_t>(u)] = list;
      });
      for (json& list : per_unit) files.push_back(std::move(list));
      return json{{"rule", "deconvnet"}, {"files", files}};
    });
  }

  // Stages: activation maximization of every unit of each layer, batched as `actmax` runs them.
  const auto actmax_options = [&](const std::string& layer) {
    ActMaxOptions m;
    m.layer = layer;
    m.batch = options.batch;
    m.render.steps = options.steps;
    m.seed = global.seed;
    m.precision = options.precision;
    if (global.threads == 0 && model->device().is_cpu()) m.workers = UsableCores();
    return m;
  };
  std::vector<json> actmax(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto [name, index] = next("actmax " + shown[l]);
    actmax[l] = RunStage(log, name, index, stage_names.size(), [&] {
      ActMaxOptions m = actmax_options(layers[l]);
      m.diversity = options.diversity;
      for (int64_t k = 0; options.max_units > 0 && k < std::min(options.max_units, infos[l]->units); ++k) m.units.push_back(k);
      ProgressReporter reporter("atlas actmax " + shown[l], "images");
      const ActMaxResult result = ActivationMaximization(probe).Run(m, [&](int64_t done, int64_t total, double fraction, int64_t, int64_t) {
        reporter.Update(done, total, fraction);
      });
      std::vector<json> units(static_cast<size_t>(infos[l]->units), json(nullptr));
      std::vector<at::Tensor> tiles;
      std::vector<std::string> captions;
      for (size_t i = 0; i < result.units.size(); ++i) {
        const UnitImage& unit = result.units[i];
        const bool raised = unit.final_value > unit.initial_value && unit.final_value > 0;
        const std::string file = "layers/" + shown[l] + "/actmax/u" + std::to_string(unit.unit) +
                                 (unit.copy ? "_c" + std::to_string(unit.copy) : "") + ".png";
        WritePng(out.File(file), result.images[static_cast<int64_t>(i)]);
        json& record = units[static_cast<size_t>(unit.unit)];
        if (unit.copy == 0) {
          record = {{"image", file},
                    {"value", unit.final_value},
                    {"initial_value", unit.initial_value},
                    {"raised", raised},
                    {"copies", json::array()}};
          tiles.push_back(result.images[static_cast<int64_t>(i)]);
          captions.push_back(shown[l] + ":" + std::to_string(unit.unit) + "\nvalue " + Fixed(unit.final_value, 2) +
                             (raised ? "" : "\nNOT RAISED"));
        } else {
          record["copies"].push_back({{"image", file}, {"value", unit.final_value}, {"raised", raised}});
        }
      }
      const std::string overview = "layers/" + shown[l] + "/units.png";
      WritePng(out.File(overview),
               AddHeading(MakeGrid(at::stack(tiles), captions),
                          shown[l] + ": channel objective, " + std::to_string(options.steps) + " steps, seed " +
                              std::to_string(global.seed)));
      return json{{"overview", overview}, {"units", units}, {"ms_per_step", result.ms_per_step}};
    });
  }

  // Stages: activation atlases (Carter et al.): t-SNE of the samples, a grid, each cell's mean vector
  // rendered by the direction objective, cells labelled by the concepts under their samples.
  std::vector<json> atlases(layers.size());
  std::map<size_t, std::vector<std::string>> sample_concepts;  // sample -> label names there (Broden)
  bool concepts_read = false;
  const auto read_concepts = [&] {
    if (concepts_read || !broden) return;
    concepts_read = true;
    const json& sampled = scan["samples"];
    std::map<size_t, Segmentation> loaded;
    const auto& labels = segmentation->labels();
    for (size_t s = 0; s < sampled.size(); ++s) {
      const size_t image = sampled[s][0].get<size_t>();
      auto it = loaded.find(image);
      if (it == loaded.end()) {
        try {
          it = loaded.emplace(image, segmentation->LoadSegmentation(image)).first;
        } catch (const Error&) {
          continue;
        }
      }
      const Segmentation& seg = it->second;
      const auto y = std::min<int64_t>(static_cast<int64_t>(sampled[s][1].get<double>() * seg.height), seg.height - 1);
      const auto x = std::min<int64_t>(static_cast<int64_t>(sampled[s][2].get<double>() * seg.width), seg.width - 1);
      std::set<int64_t> here;
      for (size_t c = 0; c < seg.pixel.size(); ++c) {
        if (seg.pixel[c].defined()) {
          for (int64_t map = 0; map < seg.pixel[c].size(0); ++map) {
            const int64_t label = seg.pixel[c][map][y][x].item<int64_t>();
            if (label > 0) here.insert(label);
          }
        }
        for (int64_t label : seg.image[c]) here.insert(label);
      }
      for (int64_t label : here) sample_concepts[s].push_back(labels[label].name);
    }
  };
  for (size_t l = 0; l < layers.size() && options.samples > 0; ++l) {
    const auto [name, index] = next("atlas " + shown[l]);
    atlases[l] = RunStage(log, name, index, stage_names.size(), [&]() -> json {
      const at::Tensor vectors = ReadNpy(out.File("stages/samples_" + shown[l] + ".npy"), "activation samples");
      if (vectors.size(0) < 8) {
        warnings.push_back(shown[l] + ": only " + std::to_string(vectors.size(0)) + " activation samples, no atlas drawn");
        return nullptr;
      }
      read_concepts();
      TsneOptions tsne;
      tsne.seed = global.seed;
      Log()->info("atlas {}: t-SNE of {} vectors of {} channels", shown[l], vectors.size(0), vectors.size(1));
      const at::Tensor layout = NormalizeLayout(Tsne(vectors, tsne));
      const std::vector<GridCell> cells = GridCells(layout, options.grid, options.min_count);
      std::vector<Objective> objectives;
      std::vector<at::Tensor> means;
      for (const GridCell& cell : cells) {
        const at::Tensor mean = vectors.index_select(0, at::tensor(cell.members, at::kLong)).mean(0);
        means.push_back(mean);
        Objective objective;
        ObjectiveTerm term;
        term.kind = "direction";
        term.layer = layers[l];
        term.path = "cell mean";
        term.direction = mean / mean.norm().clamp_min(1e-12);
        objective.terms.push_back(term);
        objectives.push_back(objective);
      }
      ActMaxOptions m = actmax_options(layers[l]);
      m.objectives = objectives;
      ProgressReporter reporter("atlas cells " + shown[l], "cells");
      const ActMaxResult result = ActivationMaximization(probe).Run(m, [&](int64_t done, int64_t total, double fraction, int64_t, int64_t) {
        reporter.Update(done, total, fraction);
      });
      const int64_t tile = result.images.size(2);
      at::Tensor canvas = at::ones({3, tile * options.grid, tile * options.grid}, at::kFloat);
      json cell_records = json::array();
      for (size_t c = 0; c < cells.size(); ++c) {
        const GridCell& cell = cells[c];
        const std::string file =
            "layers/" + shown[l] + "/atlas/cell_" + std::to_string(cell.y) + "_" + std::to_string(cell.x) + ".png";
        WritePng(out.File(file), result.images[static_cast<int64_t>(c)]);
        canvas.narrow(1, cell.y * tile, tile).narrow(2, cell.x * tile, tile).copy_(result.images[static_cast<int64_t>(c)]);
        std::map<std::string, int64_t> counts;
        for (int64_t member : cell.members) {
          auto it = sample_concepts.find(static_cast<size_t>(member));
          if (it == sample_concepts.end()) continue;
          for (const auto& label : it->second) ++counts[label];
        }
        std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
        std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
        json top_concepts = json::array();
        for (size_t i = 0; i < std::min<size_t>(5, ranked.size()); ++i) {
          top_concepts.push_back({ranked[i].first, static_cast<double>(ranked[i].second) / cell.members.size()});
        }
        const auto [values, units] = means[c].topk(std::min<int64_t>(5, means[c].size(0)));
        json top_units = json::array();
        for (int64_t i = 0; i < values.size(0); ++i) top_units.push_back({units[i].item<int64_t>(), values[i].item<float>()});
        cell_records.push_back({{"x", cell.x},
                                {"y", cell.y},
                                {"count", cell.members.size()},
                                {"image", file},
                                {"value", result.units[c].final_value},
                                {"concept", ranked.empty() ? json(nullptr) : json(ranked[0].first)},
                                {"concept_share", ranked.empty() ? 0.0 : static_cast<double>(ranked[0].second) / cell.members.size()},
                                {"top_concepts", top_concepts},
                                {"top_units", top_units}});
      }
      const std::string image = "layers/" + shown[l] + "/atlas.png";
      WritePng(out.File(image), AddHeading(canvas, shown[l] + ": activation atlas, " + std::to_string(cells.size()) +
                                                       " cells of " + std::to_string(vectors.size(0)) + " samples"));
      json points = json::array();
      const at::Tensor rounded = (layout * 10000).round() / 10000;
      for (int64_t i = 0; i < rounded.size(0); ++i) points.push_back({rounded[i][0].item<float>(), rounded[i][1].item<float>()});
      return json{{"method", "t-SNE (exact, perplexity " + Fixed(std::min(tsne.perplexity, (vectors.size(0) - 1) / 3.0), 1) +
                                 "); cells rendered by the direction objective toward the cell's mean vector (mean over positions)"},
                  {"samples", vectors.size(0)},
                  {"grid", options.grid},
                  {"min_count", options.min_count},
                  {"image", image},
                  {"cells", cell_records},
                  {"points", points}};
    });
  }

  // Stage: inversions of a few dataset images at every layer (Mahendran & Vedaldi).
  json inversions = nullptr;
  if (options.inversions > 0) {
    const auto [name, index] = next("invert");
    inversions = RunStage(log, name, index, stage_names.size(), [&] {
      json samples = json::array();
      const int64_t count = std::min<int64_t>(options.inversions, static_cast<int64_t>(source.size()));
      std::vector<Series> psnr_series, error_series;
      for (int64_t s = 0; s < count; ++s) {
        const size_t image_index = static_cast<size_t>(s * static_cast<int64_t>(source.size()) / count);
        at::Tensor image = source.Load(image_index);
        image = at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false).squeeze(0);
        InversionOptions m;
        m.layers = layers;
        m.steps = options.inversion_steps;
        m.seed = global.seed;
        m.precision = options.precision;
        ProgressReporter reporter("atlas invert image " + std::to_string(s + 1) + "/" + std::to_string(count), "steps");
        const InversionResult result = NetworkInversion(probe).Run(
            image, m, [&](int64_t group, int64_t groups, int64_t step, int64_t steps) {
              reporter.Update(group * steps + step, groups * steps);
            });
        const std::string original = "network/inversions/s" + std::to_string(s) + "_original.png";
        WritePng(out.File(original), result.original);
        json per_layer = json::array();
        Series psnr{fs::path(source.Name(image_index)).filename().string(), {}, static_cast<int>(s)};
        Series error = psnr;
        for (size_t l = 0; l < result.layers.size(); ++l) {
          const LayerInversion& inv = result.layers[l];
          const std::string file = "network/inversions/s" + std::to_string(s) + "_" + shown[l] + ".png";
          WritePng(out.File(file), inv.image);
          per_layer.push_back({{"layer", infos[l]->name},
                               {"display", shown[l]},
                               {"image", file},
                               {"psnr", inv.psnr},
                               {"feature_error", inv.feature_error}});
          psnr.values.push_back(inv.psnr);
          error.values.push_back(inv.feature_error);
        }
        psnr_series.push_back(psnr);
        error_series.push_back(error);
        samples.push_back({{"image", source.Name(image_index)}, {"original", original}, {"layers", per_layer}});
      }
      const at::Tensor psnr_chart = LineChart("Inversion PSNR by depth (higher = the layer keeps more of the image)",
                                              shown, psnr_series, "PSNR dB");
      const at::Tensor error_chart = LineChart("Relative feature error of the inversion by depth", shown, error_series,
                                               "||phi(x*)-phi0||/||phi0||");
      const int64_t width = std::max(psnr_chart.size(2), error_chart.size(2));
      const auto pad = [&](const at::Tensor& chart) {
        return at::constant_pad_nd(chart, {0, width - chart.size(2)}, 1.0);
      };
      const std::string chart = "network/inversion_by_depth.png";
      WritePng(out.File(chart), at::cat({pad(psnr_chart), pad(error_chart)}, 1));
      return json{{"chart", chart}, {"steps", options.inversion_steps}, {"samples", samples}};
    });
  }

  // Stage: class models (Simonyan et al.) for classifiers.
  json class_models = nullptr;
  if (!chosen_classes.empty()) {
    const auto [name, index] = next("classes");
    class_models = RunStage(log, name, index, stage_names.size(), [&] {
      ActMaxOptions m = actmax_options("");
      m.objective = "class";
      m.units = chosen_classes;
      ProgressReporter reporter("atlas classes", "classes");
      const ActMaxResult result = ActivationMaximization(probe).Run(m, [&](int64_t done, int64_t total, double fraction, int64_t, int64_t) {
        reporter.Update(done, total, fraction);
      });
      json shown_classes = json::array();
      std::vector<std::string> captions;
      for (size_t i = 0; i < result.units.size(); ++i) {
        const int64_t k = result.units[i].unit;
        const std::string label = k < static_cast<int64_t>(spec.labels.size()) ? spec.labels[k] : "class " + std::to_string(k);
        const std::string file = "network/classes/c" + std::to_string(k) + ".png";
        WritePng(out.File(file), result.images[static_cast<int64_t>(i)]);
        shown_classes.push_back({{"class", k}, {"name", label}, {"image", file}, {"value", result.units[i].final_value}});
        captions.push_back(label + "\nlogit " + Fixed(result.units[i].final_value, 2));
      }
      const std::string grid = "network/classes.png";
      WritePng(out.File(grid), AddHeading(MakeGrid(result.images, captions), "Class models (logit objective)"));
      return json{{"output", "output"}, {"count", classes}, {"grid", grid}, {"shown", shown_classes}};
    });
  }

  // Pages: assemble atlas.json from the stages, draw the network-level charts, write the viewer.
  json atlas = ReportHeader("atlas", *model, global.seed);
  {
    AtlasCommandOptions resolved = options;
    resolved.layers_text = "";
    for (size_t l = 0; l < layers.size(); ++l) resolved.layers_text += (l ? "," : "") + layers[l];
    atlas["options"] = ToJson(resolved);
  }
  atlas["dataset"] = scan["dataset"];
  const json layers_table = LayersToJson(probe)["layers"];
  std::set<std::string> in_atlas;
  for (const LayerInfo* info : infos) in_atlas.insert(info->name);
  json table = json::array();
  for (json entry : layers_table) {
    entry["in_atlas"] = entry.contains("name") && in_atlas.count(entry["name"].get<std::string>()) > 0;
    table.push_back(entry);
  }
  json network = {{"layers_table", table}, {"inversions", inversions}, {"classes", class_models}};
  if (broden) {
    const auto& categories = segmentation->categories();
    json rows = json::array();
    std::vector<Series> series;
    for (size_t c = 0; c < categories.size(); ++c) series.push_back({categories[c] + " unique", {}, static_cast<int>(c)});
    Series detectors{"detectors", {}, 7};
    for (size_t l = 0; l < layers.size(); ++l) {
      const json& record = scan["layers"][l];
      rows.push_back({{"layer", infos[l]->name},
                      {"display", shown[l]},
                      {"units", infos[l]->units},
                      {"detectors", record["detectors"]},
                      {"per_category", record["per_category"]}});
      for (size_t c = 0; c < categories.size(); ++c) {
        series[c].values.push_back(record["per_category"][categories[c]]["unique_concepts"].get<double>());
      }
      detectors.values.push_back(record["detectors"].get<double>());
    }
    series.push_back(detectors);
    const std::string chart = "network/concepts_by_layer.png";
    WritePng(out.File(chart), LineChart("Unique concepts per category and detectors, by depth (IoU > " +
                                            Fixed(DissectionOptions().iou_threshold, 2) + ")",
                                        shown, series, "count"));
    network["concepts_by_layer"] = {{"chart", chart}, {"categories", categories}, {"rows", rows}};
  } else {
    network["concepts_by_layer"] = nullptr;
    warnings.push_back("the dataset is a plain image folder: no dissection labels (give a Broden-format folder for them)");
  }
  atlas["network"] = network;
  json layer_pages = json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerInfo& info = *infos[l];
    const json& record = scan["layers"][l];
    json units = json::array();
    for (size_t k = 0; k < record["units"].size(); ++k) {
      json unit = record["units"][k];
      unit["actmax"] = actmax[l]["units"][k];
      const bool projected = k < deconv[l]["files"].size();
      json top = json::array();
      for (size_t r = 0; r < unit["top"].size(); ++r) {
        json entry = unit["top"][r];
        entry.erase("index");
        entry.erase("box");
        entry["deconv"] = projected ? deconv[l]["files"][k][r] : json(nullptr);
        top.push_back(entry);
      }
      unit["top"] = top;
      unit.erase("threshold");
      units.push_back(unit);
    }
    json shape = json::array();
    for (int64_t d : info.shape) shape.push_back(d);
    int64_t not_raised = 0;
    for (const json& unit : units) not_raised += unit["actmax"].is_object() && !unit["actmax"]["raised"].get<bool>() ? 1 : 0;
    if (options.max_units > 0 && options.max_units < info.units) {
      warnings.push_back(shown[l] + ": activation maximization and DeconvNet projections for units 0-" +
                         std::to_string(options.max_units - 1) + " of " + std::to_string(info.units) +
                         " only (--max-units); every unit has its top images, histogram and labels");
    }
    if (not_raised) {
      warnings.push_back(shown[l] + ": activation maximization did not raise " + std::to_string(not_raised) + " of " +
                         std::to_string(units.size()) + " units (flagged NOT RAISED)");
    }
    layer_pages.push_back({{"name", info.name},
                           {"display", shown[l]},
                           {"type", info.type},
                           {"shape", shape},
                           {"units", units},
                           {"receptive_field", FieldJson(info.receptive_field)},
                           {"detectors", record["detectors"]},
                           {"per_category", record["per_category"]},
                           {"overview", actmax[l]["overview"]},
                           {"atlas", atlases[l]}});
  }
  atlas["layers"] = layer_pages;
  atlas["stages"] = log.summary();
  atlas["warnings"] = warnings;
  WriteJson(out.File("atlas.json"), atlas);
  WriteViewer(out, atlas);
  json report = ReportHeader("atlas", *model, global.seed);
  report["options"] = atlas["options"];
  report["atlas"] = "atlas.json";
  report["stages"] = log.summary();
  report["warnings"] = warnings;
  report["timings"] = {{"total_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
  out.Finish(report);
  Log()->info("wrote {} (open index.html)", options.out);
}

std::function<void()> AddAtlasCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<AtlasCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "atlas", "Whole-network atlas: every layer and unit through all four methods, as one browsable folder");
  AddModelOptions(*command, options->model);
  command->add_option("--dataset", options->dataset,
                      "Broden-format root (gives dissection labels; 'broden' = $CNNVIZ_BRODEN or "
                      "./dataset/broden1_224) or a plain folder of images")
      ->capture_default_str();
  command->add_option("-l,--layers", options->layers_text,
                      "aliases (the sidecar's named layers), all-conv (every Conv2d output) or a,b,c")
      ->capture_default_str();
  command->add_option("--images", options->images, "Dataset images used, in index order (0 = all)")->capture_default_str();
  command->add_option("--steps", options->steps, "Activation-maximization steps (units, atlas cells, classes)")
      ->capture_default_str();
  command->add_option("--top", options->top, "Top dataset images per unit (crops and DeconvNet projections)")
      ->capture_default_str();
  command->add_option("--samples", options->samples,
                      "Activation vectors sampled per layer for its activation atlas (0 = no atlases)")
      ->capture_default_str();
  command->add_option("--grid", options->grid, "Activation-atlas cells per side")->capture_default_str();
  command->add_option("--min-count", options->min_count, "Samples an atlas cell needs to be drawn")->capture_default_str();
  command->add_option("--diversity", options->diversity,
                      "Activation-maximization images per unit, pushed apart by Olah et al.'s diversity term (2 costs "
                      "about 3x the time of 1: twice the images, and no own-channel shortcut)")
      ->capture_default_str();
  command->add_option("--max-units", options->max_units,
                      "Activation maximization and projections for units 0..N-1 of each layer only (0 = all); "
                      "every unit still gets top images, histogram and dissection")
      ->capture_default_str();
  command->add_option("--inversions", options->inversions, "Dataset images inverted at every layer (0 = none)")
      ->capture_default_str();
  command->add_option("--inversion-steps", options->inversion_steps, "Steps of each inversion")->capture_default_str();
  command->add_option("--classes", options->classes, "Class models: all (up to 100), none, or k,k,...")
      ->capture_default_str();
  command->add_option("--batch", options->batch, "Images per forward pass and per optimization batch")
      ->capture_default_str();
  command->add_option("--workers", options->decode_threads, "Image-decoding threads (0 = auto)")->capture_default_str();
  AddPrecisionOption(*command, options->precision,
                     "the network in the dataset pass, activation maximization and inversions; thresholds, "
                     "tallies, images and optimizer state stay float32, DeconvNet projections run in float32");
  command->add_flag("--restart", options->restart, "Run every stage again, even those an earlier run finished");
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->footer(
      "Stages: one pass over the dataset (dissection with a Broden-format folder; top images, per-image\n"
      "peaks and activation-atlas samples from the same pass), DeconvNet projections and activation\n"
      "maximization per layer, activation atlases per layer (t-SNE, grid cells rendered by the direction\n"
      "objective), inversions of a few images at every layer, class models. Each finished stage is recorded\n"
      "in --out/stages/; re-running the same command continues where a killed run stopped (--restart to\n"
      "redo everything). Outputs: index.html (the viewer: network, layer and unit pages; open it from\n"
      "disk), atlas.json (every number; schema in docs/atlas.schema.json), images under layers/ and\n"
      "network/, report.json last.\n"
      "Examples:\n"
      "  cnnviz atlas --model models/tinycnn.pt --dataset dataset/concepts --out out/atlas\n"
      "  cnnviz atlas --model resnet18.pt --dataset broden --layers layer3,layer4 --images 1000 --out atlas_r18\n"
      "  cnnviz atlas --model model.pt --dataset photos/ --samples 0 --inversions 0   (no labels, units only)");
  return [options, &global, command]() {
    if (command->parsed()) RunAtlas(*options, global);
  };
}

}  // namespace cnnviz::app
