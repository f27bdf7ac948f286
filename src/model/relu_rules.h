// ReLU backward rules as a custom TorchScript op (private header).
#pragma once

#include <torch/script.h>

#include <string>
#include <vector>

namespace cnnviz::detail {

// Replaces every ReLU-like node of `graph` (relu, relu_, relu6, relu6_, hardtanh(_) with a lower bound
// of 0) by cnnviz::relu_rule / cnnviz::clamp_rule taking `rule` (an int graph input, see BackwardRule).
// Returns warnings for activations left untouched (leaky_relu, threshold, prelu, clamp, ...).
std::vector<std::string> RewriteRelus(torch::jit::Graph& graph, torch::jit::Value* rule);

}  // namespace cnnviz::detail
