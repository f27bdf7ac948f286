// Probe benchmark, two modes measured in one run each, as ratios:
//  - truncation (default): forward+backward time to a tap at an early, a middle and a late layer, with the
//    graph cut after the tap and without (the full network runs);
//  - --precisions fp32,bf16[,fp16]: the network's share of a step at each precision (autocast, as
//    `--precision` runs it; core/precision.h), against the first precision listed: forward+backward to
//    the tap as activation maximization runs it (gradient layout, the image requiring grad), or with
//    --inference the forward pass of a dataset scan (inference view, channels-last taps, no gradient).
//    Rounds alternate the precisions; each case's median over all rounds is reported.
//
//   probe_bench --model resnet18.pt [--size 224] [--batch 1] [--repeats 20] [--threads 1]
//               [--layers layer1,layer2,layer3,layer4] [--precisions fp32,bf16 [--inference] [--rounds 3]]
// Prints one line per layer: median milliseconds and the ratio.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "cnnviz/core/device.h"
#include "cnnviz/core/memory.h"
#include "cnnviz/core/precision.h"
#include "cnnviz/model/model.h"
#include "cnnviz/model/probe.h"

namespace {

double MedianMs(const std::function<void()>& step, int repeats) {
  step();  // warm-up: compiles and profiles the view
  step();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    step();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  cnnviz::KeepFreedMemory();  // as the cnnviz executable does: the figures are the tool's
  CLI::App app("Probe truncation benchmark: forward+backward to a tap, cut vs. full graph");
  std::string model_path, layers_text = "layer1,layer2,layer3,layer4", device = "cpu";
  int64_t size = 224, batch = 1;
  int repeats = 20, threads = 1, rounds = 3;
  std::string precisions_text;
  bool inference = false;
  app.add_option("--model", model_path, "TorchScript model")->required();
  app.add_option("--size", size, "input side")->capture_default_str();
  app.add_option("--batch", batch, "batch size")->capture_default_str();
  app.add_option("--repeats", repeats, "timed repetitions per case (median reported)")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads")->capture_default_str();
  app.add_option("--layers", layers_text, "comma-separated taps")->capture_default_str();
  app.add_option("--device", device, "cpu|cuda")->capture_default_str();
  app.add_option("--precisions", precisions_text,
                 "comma-separated precisions (fp32,bf16,fp16) to compare instead of truncation; ratios against "
                 "the first");
  app.add_flag("--inference", inference, "with --precisions: time a scan's forward pass, not forward+backward");
  app.add_option("--rounds", rounds, "with --precisions: alternating rounds of --repeats each")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  at::set_num_threads(threads);
  // As in cnnviz: CNNVIZ_PROFILE=FILE records every op as a chrome://tracing file (bench/profile_summary.py).
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  if (const char* trace = std::getenv("CNNVIZ_PROFILE")) {
    profile = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(trace));
  }
  auto model = cnnviz::Model::Load(model_path, cnnviz::ResolveDevice(device));
  model->mutable_input_spec().height = size;
  model->mutable_input_spec().width = size;
  cnnviz::Probe probe(model);
  std::vector<std::string> layers;
  std::stringstream stream(layers_text);
  for (std::string layer; std::getline(stream, layer, ',');) layers.push_back(layer);

  if (!precisions_text.empty()) {
    std::vector<cnnviz::Precision> precisions;
    std::stringstream list(precisions_text);
    for (std::string text; std::getline(list, text, ',');) {
      precisions.push_back(cnnviz::ParsePrecision(text));
      cnnviz::CheckPrecision(precisions.back(), model->device());
    }
    std::printf("model %s, input 3x%ldx%ld, batch %ld, %d thread(s), device %s, %s, median of %d rounds x %d\n",
                model_path.c_str(), (long)size, (long)size, (long)batch, threads, device.c_str(),
                inference ? "scan forward (inference view, channels-last, no gradient)"
                          : "forward+backward to the tap (gradient layout)",
                rounds, repeats);
    std::printf("%-10s", "tap");
    for (auto precision : precisions) std::printf(" %10s", (cnnviz::ToString(precision) + " ms").c_str());
    for (size_t k = 1; k < precisions.size(); ++k) {
      std::printf(" %12s", (cnnviz::ToString(precisions[0]) + "/" + cnnviz::ToString(precisions[k])).c_str());
    }
    std::printf("\n");
    torch::manual_seed(0);
    const at::Tensor image = torch::rand({batch, 3, size, size}, at::TensorOptions().device(model->device()));
    for (const auto& layer : layers) {
      std::vector<std::vector<double>> times(precisions.size());
      for (int round = 0; round < rounds; ++round) {
        for (size_t k = 0; k < precisions.size(); ++k) {
          auto step = [&] {
            if (inference) {
              at::NoGradGuard no_grad;
              cnnviz::ViewSpec spec{{layer}, false};
              spec.inference = true;
              spec.channels_last = true;
              const cnnviz::AutocastGuard autocast(precisions[k], model->device());
              auto out = probe.Run(spec, model->Preprocess(image));
              out.taps[0].to(at::kFloat).sum().item<float>();  // as a scan reads the maps: float32
              return;
            }
            at::Tensor input = image.clone().requires_grad_(true);
            cnnviz::ProbeOutput out;
            {
              const cnnviz::AutocastGuard autocast(precisions[k], model->device());
              out = probe.Run(cnnviz::ViewSpec{{layer}, false}, model->GradientLayout(model->Preprocess(input)));
            }
            out.taps[0].to(at::kFloat).mean({2, 3}).sum().backward();
          };
          step();  // warm-up: compiles and profiles the view at this precision
          for (int i = 0; i < repeats; ++i) {
            const auto start = std::chrono::steady_clock::now();
            step();
            times[k].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
          }
        }
      }
      std::vector<double> medians;
      for (auto& case_times : times) {
        std::sort(case_times.begin(), case_times.end());
        medians.push_back(case_times[case_times.size() / 2]);
      }
      std::printf("%-10s", layer.c_str());
      for (double median : medians) std::printf(" %10.2f", median);
      for (size_t k = 1; k < medians.size(); ++k) std::printf(" %11.2fx", medians[0] / medians[k]);
      std::printf("\n");
      std::fflush(stdout);
    }
    return 0;
  }

  std::printf("model %s, input %ldx%ldx%ld, batch %ld, %d thread(s), device %s, median of %d\n",
              model_path.c_str(), (long)3, (long)size, (long)size, (long)batch, threads, device.c_str(), repeats);
  std::printf("%-10s %12s %12s %10s %12s %12s\n", "tap", "cut ms", "full ms", "speed-up", "cut nodes", "full nodes");
  torch::manual_seed(0);
  const at::Tensor image = torch::randn({batch, 3, size, size}, at::TensorOptions().device(model->device()));
  for (const auto& layer : layers) {
    auto step = [&](bool output) {
      at::Tensor input = image.clone().requires_grad_(true);
      cnnviz::ViewSpec spec{{layer}, output};
      auto out = probe.Run(spec, input);
      at::Tensor objective = out.taps[0].sum();
      // Without truncation the whole network runs forward (as with a forward hook); backward starts at
      // the tap either way.
      objective.backward();
    };
    const double cut = MedianMs([&] { step(false); }, repeats);
    const double full = MedianMs([&] { step(true); }, repeats);
    std::printf("%-10s %12.2f %12.2f %9.2fx %12zu %12zu\n", layer.c_str(), cut, full, full / cut,
                probe.ViewSize({{layer}, false}), probe.ViewSize({{layer}, true}));
  }
  return 0;
}
