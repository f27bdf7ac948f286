// `cnnviz layers`: the layer catalogue of a model.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <ostream>

#include "cnnviz/common.h"

namespace cnnviz::app {

struct LayersOptions {
  ModelOptions model;
  bool json = false;  // --json: stable JSON on stdout instead of a table
};

// Prints the catalogue of `options.model` to `out`. Throws cnnviz::Error on bad input.
void RunLayers(const LayersOptions& options, const GlobalOptions& global, std::ostream& out);

// Registers the subcommand; returns the function main calls when it was chosen.
std::function<void()> AddLayersCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
