// `cnnviz atlas`: the whole network through all four methods, as one browsable folder (docs/atlas.md).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "cnnviz/core/precision.h"
#include "cnnviz/common.h"

namespace cnnviz::app {

struct AtlasCommandOptions {
  ModelOptions model;
  std::string dataset = "dataset/concepts";  // --dataset: Broden root (dissection) or plain image folder
  std::string layers_text = "aliases";       // --layers: aliases | all-conv | a,b,c
  int64_t images = 1000;       // --images: dataset images used (0 = all)
  int64_t steps = 128;         // --steps: activation-maximization steps (units, cells, classes)
  int64_t top = 4;             // --top: dataset images per unit
  int64_t samples = 1000;      // --samples: activation vectors per layer for its activation atlas (0 = none)
  int64_t grid = 10;           // --grid: activation-atlas cells per side
  int64_t min_count = 3;       // --min-count: samples a cell needs to be drawn
  int64_t diversity = 2;       // --diversity: activation-maximization images per unit (copies pushed apart)
  int64_t max_units = 0;       // --max-units: actmax and projections for units 0..N-1 of each layer (0 = all)
  int64_t inversions = 2;      // --inversions: sample images inverted at every layer (0 = none)
  int64_t inversion_steps = 200;  // --inversion-steps
  std::string classes = "all";    // --classes: all | none | k,k,... (class-model images, classifiers only)
  int64_t batch = 16;             // --batch: images per forward pass (scan), per optimization batch
  int64_t decode_threads = 0;     // --workers: decoding threads (0 = auto)
  Precision precision = Precision::kFp32;  // --precision: the network in the scan, actmax and inversions
  bool restart = false;           // --restart: ignore finished stages
  std::string out = "out/atlas";  // --out
};

// Runs the stages (scan, projections, actmax per layer, inversions, atlas cells, classes) that the folder
// has not finished yet, then writes atlas.json, the viewer and report.json.
void RunAtlas(AtlasCommandOptions options, const GlobalOptions& global);

std::function<void()> AddAtlasCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
