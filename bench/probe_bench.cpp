// Probe benchmark: forward+backward time to a tap at an early, a middle and a late layer, with the graph
// cut after the tap (truncation) and without (the full network runs), as ratios measured in one run.
//
//   probe_bench --model resnet18.pt [--size 224] [--batch 1] [--repeats 20] [--threads 1]
//               [--layers layer1,layer2,layer3,layer4]
// Prints one line per layer: median milliseconds both ways and the speed-up of truncation.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "cnnviz/core/device.h"
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
  CLI::App app("Probe truncation benchmark: forward+backward to a tap, cut vs. full graph");
  std::string model_path, layers_text = "layer1,layer2,layer3,layer4", device = "cpu";
  int64_t size = 224, batch = 1;
  int repeats = 20, threads = 1;
  app.add_option("--model", model_path, "TorchScript model")->required();
  app.add_option("--size", size, "input side")->capture_default_str();
  app.add_option("--batch", batch, "batch size")->capture_default_str();
  app.add_option("--repeats", repeats, "timed repetitions per case (median reported)")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads")->capture_default_str();
  app.add_option("--layers", layers_text, "comma-separated taps")->capture_default_str();
  app.add_option("--device", device, "cpu|cuda")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  at::set_num_threads(threads);
  auto model = cnnviz::Model::Load(model_path, cnnviz::ResolveDevice(device));
  model->mutable_input_spec().height = size;
  model->mutable_input_spec().width = size;
  cnnviz::Probe probe(model);
  std::vector<std::string> layers;
  std::stringstream stream(layers_text);
  for (std::string layer; std::getline(stream, layer, ',');) layers.push_back(layer);

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
