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
struct LayerInfo;

// One term of an objective. Which fields matter depends on its kind.
struct ObjectiveTerm {
  std::string kind = "channel";  // a registered kind's name (ObjectiveKinds())
  double weight = 1.0;
  std::string layer;      // for kinds that read a layer
  int64_t unit = 0;       // channel index, or class index for "class"
  int64_t y = -1, x = -1; // "neuron" position; -1 = the centre of the map
  std::string path;       // "direction": where the vector came from
  at::Tensor direction;   // "direction": [units]
};

struct Objective {
  std::vector<ObjectiveTerm> terms;
  // Canonical text of the objective (round-trips through ParseObjective).
  std::string ToString() const;
};

// What a term reads, for the methods' shortcuts (one channel alone, truncation, the output).
enum class TermReads {
  kChannel,  // channel `unit` of `layer` only
  kLayer,    // several channels of `layer`
  kOutput,   // the model's output (logits)
  kImage,    // the image alone (regularizers)
};

// The parser's cursor, handed to a kind's `parse` (objective.cpp implements it).
class TermParser {
 public:
  virtual ~TermParser() = default;
  virtual std::string Name() = 0;       // a layer name (module path or alias)
  virtual int64_t Integer() = 0;        // a non-negative integer
  virtual std::string Path() = 0;       // everything up to ')', trimmed
  virtual bool Accept(char c) = 0;
  virtual void Expect(char c) = 0;
  [[noreturn]] virtual void Fail(const std::string& what) const = 0;
};

// Inputs of a term's value, for every batch element at once.
struct TermInputs {
  const at::Tensor& image;                    // [N,3,H,W] in [0,1], untransformed
  const std::vector<std::string>& layers;     // LayersOf(objectives)
  const std::vector<at::Tensor>& taps;        // their outputs for the transformed batch
  const at::Tensor& logits;                   // undefined unless a term reads the output
  const at::Tensor& Tap(const std::string& layer) const;
};

// One kind of term: its text, its checks and its value. A new kind is one ObjectiveKind and one line in
// ObjectiveKinds() (objective.cpp); the parser, ToString, CheckObjective, EvaluateObjectives and the
// CLI's help text all read the registry.
struct ObjectiveKind {
  std::string name;         // ObjectiveTerm::kind
  std::string syntax;       // for help: "LAYER:UNIT@Y,X"
  std::string description;  // for help
  TermReads reads = TermReads::kLayer;
  // The text form starts with `keyword` ("class", "dir", "tv"); an empty keyword is the LAYER ':' UNIT
  // form, where `marker` (a character right after the unit, '@' for neurons; '\0' for none) picks the kind.
  std::string keyword;
  char marker = '\0';
  // Reads the rest of the term: after the keyword, or after LAYER ':' UNIT and the marker (layer and unit
  // already set). May read nothing.
  void (*parse)(TermParser& in, ObjectiveTerm& term) = nullptr;
  // The canonical text of the term, without its weight.
  std::string (*format)(const ObjectiveTerm& term) = nullptr;
  // Checks beyond the layer and unit range (which every kind that reads a layer gets); may be null.
  void (*check)(const ObjectiveTerm& term, const LayerInfo& layer) = nullptr;
  // The term's value for batch element i (a scalar, before its weight).
  at::Tensor (*evaluate)(const ObjectiveTerm& term, const TermInputs& in, int64_t i) = nullptr;
  // The value is the mean of channel `unit` of the layer's map: every such term of a batch is evaluated
  // by one gather per layer instead (the whole-layer case), and `evaluate` is not called.
  bool gathered_channel_mean = false;
};

// Every kind, in the order --help lists them.
const std::vector<ObjectiveKind>& ObjectiveKinds();
// The kind named `name`; UsageError for an unknown name.
const ObjectiveKind& FindObjectiveKind(const std::string& name);
// The syntax of every kind, one per line, for --help.
std::string ObjectiveHelp();

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
