// `cnnviz dissect`: network dissection against a Broden-format dataset.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "cnnviz/common.h"
#include "cnnviz/io/broden.h"
#include "cnnviz/methods/network_dissection.h"

namespace cnnviz::app {

struct DissectCommandOptions {
  ModelOptions model;
  DissectionOptions method;
  BrodenOptions dataset_options;
  std::string dataset = "broden";       // --dataset: Broden root, or "broden" for the default location
  std::string layers_text = "all-conv";  // --layers: a,b,c or all-conv
  std::string categories_text;          // --categories: color,object,... or ndl
  std::string thresholds_text;          // --thresholds: one .npy per layer
  std::string activated_area = "covered";  // --activated-area: covered|present
  std::string out = "out/dissect";       // --out
  bool save_arrays = false;             // --save-arrays: thresholds and tallies as .npy
};

// Writes report.json, index.html and per layer tally.csv, detectors.png, units/*.png (and arrays).
void RunDissect(DissectCommandOptions options, const GlobalOptions& global);

std::function<void()> AddDissectCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
