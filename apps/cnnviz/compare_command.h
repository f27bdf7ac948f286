// `cnnviz compare`: network dissection of several models (checkpoints of one training run, or different
// networks) in one pass over a Broden dataset, and of a layer under rotations of its basis: how
// interpretability changes over training, between networks, and whether it is axis-aligned (Bau et al.).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cnnviz/common.h"
#include "cnnviz/io/broden.h"
#include "cnnviz/methods/network_dissection.h"

namespace cnnviz::app {

struct CompareCommandOptions {
  std::vector<std::string> models;    // --models: files (several values, or comma-separated)
  std::string names_text;             // --names: one per model (default: file names without .pt)
  std::string order = "given";        // --order: given | numeric (by the last number in each name)
  std::optional<int64_t> input_size;  // --input-size
  DissectionOptions method;
  BrodenOptions dataset_options;
  std::string dataset = "broden";     // --dataset: Broden root, or "broden" for the default location
  std::string categories_text;        // --categories
  std::string layers_text = "all";    // --layers: all (the first model's aliases, else every conv), all-conv, a,b,c
  std::string rotations_text;         // --rotations: alphas in [0, 1], applied to the last model
  std::string units_text;             // --units: units with a strip (default: the changed ones)
  bool units_given = false;
  int64_t strip_units = 8;            // --strip-units: at most this many automatic strips per layer
  int64_t actmax_steps = 64;          // --actmax-steps: activation maximization in the strips (0 = none)
  bool restart = false;               // --restart: ignore finished models in stages/
  std::string out = "out/compare";    // --out
};

// Writes compare.json (docs/compare.md), report.json, data.js + the viewer, interpretability.png and per
// layer charts, tiles and strips; stages/ records finished models.
void RunCompare(CompareCommandOptions options, const GlobalOptions& global);

std::function<void()> AddCompareCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
