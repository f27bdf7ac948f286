// Small helpers over torch::jit values shared by the model sources (private header).
#pragma once

#include <torch/script.h>

#include "cnnviz/core/error.h"

namespace cnnviz::detail {

// The first tensor of a tensor or (nested) tuple, e.g. googlenet's NamedTuple of logits.
inline at::Tensor FirstTensor(const c10::IValue& value) {
  if (value.isTensor()) return value.toTensor();
  if (value.isTuple()) {
    for (const auto& element : value.toTupleRef().elements()) {
      if (element.isTensor() || element.isTuple()) return FirstTensor(element);
    }
  }
  if (value.isList()) {
    for (const auto& element : value.toListRef()) {
      if (element.isTensor()) return element.toTensor();
    }
  }
  throw ModelError("the model's forward returns " + value.tagKind() + ", not a tensor");
}

}  // namespace cnnviz::detail
