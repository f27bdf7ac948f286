// `cnnviz actmax`: activation maximization for units, channels, classes or directions.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "cnnviz/common.h"
#include "cnnviz/methods/activation_maximization.h"

namespace cnnviz::app {

struct ActMaxCommandOptions {
  ModelOptions model;
  ActMaxOptions method;
  std::string units_text;         // --unit / --units
  bool units_given = false;       // --units was on the command line (an empty value is an error)
  std::string out = "out/actmax";  // --out
  bool save_arrays = false;       // --save-arrays: float32 .npy per image
  std::string reference_dataset;  // --reference-dataset: image folder for top natural activations
};

// Runs the method and writes grid.png, units/*.png, report.json (and arrays/*.npy) into options.out.
void RunActMax(ActMaxCommandOptions options, const GlobalOptions& global);

std::function<void()> AddActMaxCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
