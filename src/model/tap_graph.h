// The tap graph: a model's forward graph inlined down to aten ops, with every submodule call's output
// reachable as an extra graph output (private header; see docs/architecture.md, "The Probe").
#pragma once

#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

namespace cnnviz::detail {

struct TapSite {
  std::string name;   // module path, "path#k" for the k-th repeated call, or "kind_N" for op-level taps
  std::string type;   // module class name, or the aten op for op-level taps
  // Index into the tap graph's outputs; 0 is the model's own output. Meaningless when !tappable.
  size_t output_index = 0;
  bool tappable = true;
  std::string note;
};

struct TapGraph {
  // Inputs: (self, x). Outputs: (model output, one value per tappable site).
  std::shared_ptr<torch::jit::Graph> graph;
  std::vector<TapSite> sites;  // in forward order
  bool op_level = false;       // true for frozen models: no module names, taps are aten ops
  std::vector<std::string> warnings;
};

// Builds the tap graph of `module.forward`. Never mutates the module or its methods' graphs.
TapGraph BuildTapGraph(const torch::jit::Module& module);

// Follows a chain of prim::GetAttr from the graph's `self` input and returns the attribute it reaches
// (a submodule, parameter or constant), or None when `value` is not such a chain.
c10::IValue ResolveAttribute(torch::jit::Value* value, const torch::jit::Module& module);

}  // namespace cnnviz::detail
