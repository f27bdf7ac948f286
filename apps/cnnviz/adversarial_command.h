// `cnnviz adversarial`: attack an image (or every image of a folder) and show where in the network the
// attack takes hold, which units it switches on and off, and what the network then sees.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "cnnviz/common.h"
#include "cnnviz/methods/adversarial.h"

namespace cnnviz::app {

struct AdversarialCommandOptions {
  ModelOptions model;
  AttackOptions attack;
  std::string norm = "linf";             // --norm: linf | l2
  std::string epsilon_text = "8/255";    // --epsilon: a number or a fraction a/b
  std::string step_size_text = "auto";   // --step-size: auto (2.5 epsilon / steps) or a number or fraction
  bool no_random_start = false;          // --no-random-start
  std::string image;                     // --image: one image
  std::string images;                    // --images: an image folder or Broden root
  std::string adversarial_image;         // --adversarial-image: a perturbed --image made elsewhere
  std::string npy_values = "range";      // --npy-values: what a .npy --image holds
  std::string layers_text = "all";       // --layers: where divergences are measured
  std::string inspect_text = "auto";     // --inspect: layers whose units' changes are listed; none
  int64_t changed_units = 8;             // --changed-units: units listed per direction and layer
  std::string dissection;                // --dissection: a `cnnviz dissect` output folder of this model
  std::string rule = "deconvnet";        // --rule: the projections' backward rule
  std::string inversion_layers_text = "auto";  // --inversion-layers: auto | none | a,b,c
  int64_t inversion_steps = 200;         // --inversion-steps
  int64_t batch = 16;                    // --batch: images attacked together
  size_t max_images = 0;                 // --max-images: folder mode, 0 = all
  int64_t workers = 1;                   // --workers: threads decoding the next batches
  std::string out = "out/adversarial";   // --out
};

// Writes report.json (docs/adversarial.md), data.js and the viewer, divergence.png, images/, changes/,
// inversions/.
void RunAdversarial(AdversarialCommandOptions options, const GlobalOptions& global);

std::function<void()> AddAdversarialCommand(CLI::App& app, const GlobalOptions& global);

// "8/255", "0.03", "3e-2" -> the value; UsageError naming `flag` otherwise.
double ParseFraction(const std::string& text, const std::string& flag);

}  // namespace cnnviz::app
