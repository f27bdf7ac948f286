// Objectives (Lucid's optvis/objectives.py): what an image should maximize, as a sum of weighted terms.
//
// Text syntax, for the CLI and reports ("conv5:42 + 0.5*conv4:7 - 0.05*tv"):
//   expr  := ['-'] term (('+' | '-') term)*
//   term  := [number '*'] atom
//   atom  := LAYER ':' UNIT                 channel: mean of the unit's feature map (Olah et al.)
//          | LAYER ':' UNIT '@' Y ',' X     neuron: the unit at one spatial position (Erhan et al.)
//          | 'class' ':' K                  the model's output K, pre-softmax (Simonyan et al.)
//          | 'dir' '(' LAYER ',' PATH ')'   direction: dot product of the channel vector (mean over
//                                           positions) with the vector in PATH (numbers, one per unit)
//          | 'tv' | 'l2' | 'alpha'          image regularizers (subtract them): total variation
//                                           (beta = 2), L2 distance from grey, alpha-norm (alpha = 6)
// LAYER is a module path or alias (features.10, layer4.1.conv2, conv5). All terms are maximized.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace cnnviz {

class Probe;

struct ObjectiveTerm {
  enum class Kind { kChannel, kNeuron, kClass, kDirection, kTotalVariation, kL2, kAlphaNorm };
  Kind kind = Kind::kChannel;
  double weight = 1.0;
  std::string layer;      // for kChannel, kNeuron, kDirection
  int64_t unit = 0;       // channel index, or class index for kClass
  int64_t y = -1, x = -1; // kNeuron position; -1 = the centre of the map
  std::string path;       // kDirection: file the vector came from
  at::Tensor direction;   // kDirection: [units]
};

struct Objective {
  std::vector<ObjectiveTerm> terms;
  // Canonical text of the objective (round-trips through ParseObjective).
  std::string ToString() const;
};

// Parses the syntax above. Throws UsageError with the position of the first problem. Directions are
// read from their files here (InputError when unreadable).
Objective ParseObjective(const std::string& text);

// Checks layers, units and positions against the probe; throws UsageError naming the problem.
void CheckObjective(const Objective& objective, const Probe& probe);

// Weighted sum of the terms for every batch element: element i uses objectives[i].
// `image` is the untransformed batch [N,3,H,W] in [0,1] (for regularizers); `taps` maps each layer in
// LayersOf(objectives) to its output for the transformed batch; `logits` may be undefined when no
// class term is used. Returns [N].
at::Tensor EvaluateObjectives(const std::vector<Objective>& objectives, const at::Tensor& image,
                              const std::vector<std::string>& layers, const std::vector<at::Tensor>& taps,
                              const at::Tensor& logits);

// The distinct layers the objectives read, in first-use order, and whether any reads the output.
std::vector<std::string> LayersOf(const std::vector<Objective>& objectives, bool* needs_output);

// Olah et al.'s diversity term for groups of consecutive batch elements of size `group`: the mean
// pairwise cosine similarity of the elements' Gram matrices of `activations` [N,C,H,W]. Returns [N]
// (each element's share; lower is more diverse). Element i's share is differentiated with respect to
// element i only (the others' Gram matrices enter as constants), so its gradient moves element i away
// from the others and nothing else; Lucid differentiates both sides, which only doubles the gradient.
at::Tensor DiversityPenalty(const at::Tensor& activations, int64_t group);

}  // namespace cnnviz
