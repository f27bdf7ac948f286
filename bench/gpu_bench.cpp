// Throughput of cnnviz's methods on one device, for the GPU benchmarks of scripts/gpu_bench.sh (which
// compares them with the same loops in PyTorch's Python on the same machine). Needs cnnviz::core and
// cnnviz::io only, so it builds where OpenCV is missing. Prints one JSON object on stdout.
//
//   gpu_bench actmax  --model M --layer L [--units 64] [--size 224] [--steps 40] [--truncate 1] [--device cuda]
//   gpu_bench dissect --model M --dataset D --layers L1,L2 [--batch 64] [--workers 0] [--max-images 0]
//   gpu_bench deconv  --model M --dataset D --layer L [--batch 64] [--workers 0] [--max-images 0]
//
// actmax: every unit in one batch (one part on CUDA), Lucid's standard parameterization and
//   transforms. A step is one Adam step over the whole batch. Fixed costs (initialization, the final
//   evaluation, the copy back) are removed by timing a short and a long run: seconds per step =
//   (long - short) / (steps - 5). A warm-up run comes first.
// dissect: one full dissection (both passes), then where the time goes, each measured alone with the
//   same batch and decoding threads: decoding images and masks, the forward pass (random input of the
//   model's size, synchronized), and the rest (tallies, thresholds, top images, copies).
// deconv: the top-9 scan over every unit of the layer, images per second; decoding alone and the
//   forward pass alone as above.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>


#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cnnviz/core/device.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/memory.h"
#include "cnnviz/data/prefetch.h"
#include "cnnviz/io/broden.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/methods/activation_maximization.h"
#include "cnnviz/methods/deconvnet.h"
#include "cnnviz/methods/network_dissection.h"
#include "cnnviz/model/model.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void Synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// --key value pairs.
class Args {
 public:
  Args(int argc, char** argv) {
    for (int i = 2; i < argc; ++i) {
      const std::string key = argv[i];
      if (key.rfind("--", 0) != 0 || i + 1 >= argc) throw UsageError("expected --key value, got '" + key + "'");
      values_[key.substr(2)] = argv[++i];
    }
  }
  std::string Get(const std::string& key, const std::string& fallback = "") const {
    auto it = values_.find(key);
    if (it != values_.end()) return it->second;
    if (fallback.empty()) throw UsageError("--" + key + " is required");
    return fallback;
  }
  int64_t Int(const std::string& key, int64_t fallback) const { return std::stoll(Get(key, std::to_string(fallback))); }

 private:
  std::map<std::string, std::string> values_;
};

std::vector<std::string> Split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) parts.push_back(part);
  return parts;
}

// Images per second of the forward pass alone, cut after `layers`, on random input of the model's size,
// in the view the methods run (dissection and the DeconvNet scan take channels-last taps).
double ForwardRate(const Probe& probe, const std::vector<std::string>& layers, int64_t batch, int64_t repeats) {
  const Model& model = probe.model();
  const InputSpec& spec = model.input_spec();
  ViewSpec view{layers, false};
  view.inference = true;
  view.channels_last = true;
  at::NoGradGuard no_grad;
  const at::Tensor input = at::rand({batch, 3, spec.height, spec.width}).to(model.device());
  for (int i = 0; i < 3; ++i) probe.Run(view, model.Preprocess(input));
  Synchronize(model.device());
  const auto start = Clock::now();
  for (int64_t i = 0; i < repeats; ++i) probe.Run(view, model.Preprocess(input));
  Synchronize(model.device());
  return static_cast<double>(batch * repeats) / Since(start);
}

json Actmax(const Args& args, const c10::Device& device) {
  auto model = Model::Load(args.Get("model"), device);
  Probe probe(model);
  ActMaxOptions options;
  options.layer = args.Get("layer");
  const int64_t units = args.Int("units", 64);
  for (int64_t u = 0; u < units; ++u) options.units.push_back(u);
  options.batch = units;
  options.param.height = options.param.width = args.Int("size", 224);
  options.truncate = args.Int("truncate", 1) != 0;  // 0: the whole network every step, as eager Python
  const int64_t steps = args.Int("steps", 40);
  auto run = [&](int64_t count) {
    options.render.steps = count;
    const auto start = Clock::now();
    ActivationMaximization(probe).Run(options);  // returns images on the CPU: synchronized
    return Since(start);
  };
  run(5);  // warm-up: TorchScript's profiling runs, cuDNN's algorithm search
  const double short_run = run(5), long_run = run(steps);
  const double per_step = (long_run - short_run) / static_cast<double>(steps - 5);
  return {{"method", "actmax"}, {"layer", options.layer}, {"units", units}, {"size", options.param.height},
          {"truncate", options.truncate},
          {"steps", steps}, {"seconds_short", short_run}, {"seconds_long", long_run},
          {"ms_per_step", per_step * 1e3}, {"steps_per_second", 1.0 / per_step},
          {"units_steps_per_second", static_cast<double>(units) / per_step}};
}

// Decoding alone: every image (and, for dissection, its masks), in batches, on `threads` threads.
double DecodeRate(const SegmentationSource* segmentation, const ImageSource& source, int64_t batch, size_t threads,
                  size_t limit, int64_t height, int64_t width) {
  const size_t total = limit ? std::min(limit, source.size()) : source.size();
  auto decode = [&](size_t begin, size_t end) {
    int64_t done = 0;
    for (size_t i = begin; i < end; ++i) {
      at::Tensor image = source.Load(i);
      image = at::upsample_bilinear2d(image.unsqueeze(0), {height, width}, false);
      if (segmentation != nullptr) segmentation->LoadSegmentation(i);
      ++done;
    }
    return done;
  };
  const auto start = Clock::now();
  Prefetcher<int64_t> prefetcher(total, static_cast<size_t>(batch), decode, threads);
  int64_t done = 0, count = 0;
  while (prefetcher.Next(&count)) done += count;
  return static_cast<double>(done) / Since(start);
}

json Dissect(const Args& args, const c10::Device& device) {
  auto model = Model::Load(args.Get("model"), device);
  Probe probe(model);
  BrodenOptions broden;
  broden.max_images = static_cast<size_t>(args.Int("max-images", 0));
  const auto source = OpenBroden(args.Get("dataset"), broden);
  DissectionOptions options;
  options.layers = Split(args.Get("layers"));
  options.batch = args.Int("batch", 64);
  options.decode_threads = args.Int("workers", 0);
  options.cache_mb = args.Int("cache-mb", 256);
  const size_t threads = DecodeThreads(options.decode_threads, device);
  {  // warm-up on a few images: cuDNN's algorithm search, allocator growth
    BrodenOptions few = broden;
    few.max_images = static_cast<size_t>(options.batch) * 2;
    NetworkDissection(probe).Run(*OpenBroden(args.Get("dataset"), few), options);
  }
  auto start = Clock::now();
  const DissectionResult result = NetworkDissection(probe).Run(*source, options);
  const double seconds = Since(start);
  const InputSpec& spec = model->input_spec();
  const double decode = DecodeRate(source.get(), *source, options.batch, threads, 0, spec.height, spec.width);
  const double forward = ForwardRate(probe, options.layers, options.batch, 20);
  const double images = static_cast<double>(result.images);
  // Both passes decode every image; the second runs the network for images not in the cache.
  const double decode_seconds = 2 * images / decode;
  const double forward_seconds = (2 * images - static_cast<double>(result.cached_images)) / forward;
  return {{"method", "dissect"}, {"layers", options.layers}, {"batch", options.batch}, {"workers", threads},
          {"images", result.images}, {"cached_images", result.cached_images}, {"seconds", seconds},
          {"images_per_second", images / seconds}, {"pass1_seconds", result.threshold_seconds},
          {"pass2_seconds", result.tally_seconds}, {"decode_images_per_second", decode},
          {"forward_images_per_second", forward}, {"decode_seconds_alone", decode_seconds},
          {"forward_seconds_alone", forward_seconds}};
}

json Deconv(const Args& args, const c10::Device& device) {
  auto model = Model::Load(args.Get("model"), device);
  Probe probe(model);
  const auto source = OpenImageDataset(args.Get("dataset"));
  DeconvOptions options;
  options.layers = {args.Get("layer")};
  options.batch = args.Int("batch", 64);
  options.decode_threads = args.Int("workers", 0);
  options.max_images = static_cast<size_t>(args.Int("max-images", 0));
  const size_t threads = DecodeThreads(options.decode_threads, device);
  DeconvNet deconv(probe);
  {
    DeconvOptions warm = options;
    warm.max_images = static_cast<size_t>(options.batch) * 2;
    ScanStats ignored;
    deconv.Scan(*source, warm, &ignored);
  }
  const auto start = Clock::now();
  ScanStats stats;
  deconv.Scan(*source, options, &stats);
  const double seconds = Since(start);
  const InputSpec& spec = model->input_spec();
  const double decode = DecodeRate(nullptr, *source, options.batch, threads, options.max_images, spec.height, spec.width);
  const double forward = ForwardRate(probe, options.layers, options.batch, 20);
  return {{"method", "deconv_scan"}, {"layer", options.layers[0]}, {"batch", options.batch}, {"workers", threads},
          {"images", stats.images}, {"seconds", seconds},
          {"images_per_second", static_cast<double>(stats.images) / seconds}, {"decode_images_per_second", decode},
          {"forward_images_per_second", forward}};
}

int Main(int argc, char** argv) {
  if (argc < 2) throw UsageError("usage: gpu_bench actmax|dissect|deconv --model M ... (see bench/gpu_bench.cpp)");
  const std::string method = argv[1];
  const Args args(argc, argv);
  const c10::Device device = ResolveDevice(args.Get("device", "cuda"));
  json out;
  if (method == "actmax") {
    out = Actmax(args, device);
  } else if (method == "dissect") {
    out = Dissect(args, device);
  } else if (method == "deconv") {
    out = Deconv(args, device);
  } else {
    throw UsageError("unknown method '" + method + "'");
  }
  out["device"] = DeviceName(device);
  out["intra_op_threads"] = at::get_num_threads();
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace cnnviz

int main(int argc, char** argv) {
  cnnviz::KeepFreedMemory();  // as the cnnviz executable does
  try {
    return cnnviz::Main(argc, argv);
  } catch (const cnnviz::Error& e) {
    std::cerr << "gpu_bench: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::cerr << "gpu_bench: " << e.what() << "\n";
    return 1;
  }
}
