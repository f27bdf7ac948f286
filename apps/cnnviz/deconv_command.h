// `cnnviz deconv`: top images and DeconvNet projections for every unit of a layer.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "cnnviz/common.h"
#include "cnnviz/methods/deconvnet.h"

namespace cnnviz::app {

struct DeconvCommandOptions {
  ModelOptions model;
  DeconvOptions method;
  std::string layers_text;        // --layer / --layers: a,b,c
  std::string units_text;         // --units
  bool units_given = false;       // --units was on the command line (an empty value is an error)
  std::string rule = "deconvnet";  // --rule
  std::string dataset;            // --dataset: image folder or Broden root
  std::string image;              // --image: one-image mode (PNG/JPEG or .npy)
  std::string npy_values = "range";  // --npy-values: what a .npy --image holds
  std::string position_text;      // --position: y,x for --seed-from position
  std::string out = "out/deconv";  // --out
  bool save_arrays = false;       // --save-arrays: raw projections as float32 .npy
};

// Writes units/<layer>_<unit>.png (projections beside image patches), grid.png, report.json.
void RunDeconv(DeconvCommandOptions options, const GlobalOptions& global);

std::function<void()> AddDeconvCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
