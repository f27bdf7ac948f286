#include "cnnviz/layers_command.h"

#include <iostream>
#include <memory>

#include "cnnviz/io/layers_report.h"

namespace cnnviz::app {

void RunLayers(const LayersOptions& options, const GlobalOptions& global, std::ostream& out) {
  std::shared_ptr<Model> model = LoadModel(options.model, global);
  const std::unique_ptr<Probe> probe_owner = MakeProbe(model);
  Probe& probe = *probe_owner;
  if (options.json) {
    out << LayersToJson(probe).dump(2) << '\n';
  } else {
    out << LayersToTable(probe);
  }
}

std::function<void()> AddLayersCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<LayersOptions>();
  CLI::App* command = app.add_subcommand(
      "layers", "List every tappable layer: module path, alias, type, output shape, units, receptive field");
  AddModelOptions(*command, options->model);
  command->add_flag("--json", options->json, "Print stable JSON to stdout instead of a table");
  command->footer(
      "Layer names are module paths (features.10, layer4.1.conv2); aliases come from the model's sidecar.\n"
      "Examples:\n"
      "  cnnviz layers --model models/tinycnn.pt\n"
      "  cnnviz layers --model alexnet.pt --input-size 227 --json > layers.json");
  return [options, &global, command]() {
    if (command->parsed()) RunLayers(*options, global, std::cout);
  };
}

}  // namespace cnnviz::app
