// `cnnviz invert` (reconstruct an image from a layer's features: regularized optimization or a trained
// decoder) and `cnnviz upconv train` (train such a decoder).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

#include "cnnviz/common.h"
#include "cnnviz/methods/network_inversion.h"
#include "cnnviz/methods/upconv_decoder.h"

namespace cnnviz::app {

struct InvertCommandOptions {
  ModelOptions model;
  InversionOptions method;
  std::string image;                 // --image
  std::string npy_values = "range";  // --npy-values: what a .npy --image holds
  std::string layers_text;           // --layer/--layers: a,b,c | all | all-conv
  std::string decoder;               // --decoder: a file from `cnnviz upconv train`
  std::string lr_text = "auto";      // --lr: auto or a number
  std::string out = "out/invert";    // --out
  bool save_arrays = false;          // --save-arrays
};

// Writes grid.png (original | reconstructions), layers/<layer>.png, original.png, report.json.
void RunInvert(InvertCommandOptions options, const GlobalOptions& global);
std::function<void()> AddInvertCommand(CLI::App& app, const GlobalOptions& global);

struct UpconvTrainCommandOptions {
  ModelOptions model;
  DecoderTrainOptions method;
  std::string dataset;  // --dataset: image folder or Broden root
};

void RunUpconvTrain(UpconvTrainCommandOptions options, const GlobalOptions& global);
std::function<void()> AddUpconvCommand(CLI::App& app, const GlobalOptions& global);

}  // namespace cnnviz::app
