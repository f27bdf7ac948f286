// Shared helpers for the tests: where fixtures live and how to read Python references.
#pragma once

#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "cnnviz/core/error.h"
#include "cnnviz/model/model.h"
#include "cnnviz/model/probe.h"

namespace cnnviz::test {

// Folder written by tests/fixtures/make_fixtures.py (ctest sets CNNVIZ_FIXTURES).
inline std::string FixtureDir() {
  const char* dir = std::getenv("CNNVIZ_FIXTURES");
  return dir ? dir : CNNVIZ_DEFAULT_FIXTURES;
}

inline std::string Fixture(const std::string& name) { return FixtureDir() + "/" + name; }

// A dict written by torch.save in Python.
using Reference = std::map<std::string, c10::IValue>;
inline Reference LoadReference(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing reference " + path + " (run the fixtures/models test first)");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reference reference;
  for (const auto& item : torch::jit::pickle_load(bytes).toGenericDict()) {
    reference[item.key().toStringRef()] = item.value();
  }
  return reference;
}

// Loads a fixture model on CPU with a square input side.
inline std::shared_ptr<Model> LoadFixtureModel(const std::string& file, int64_t size) {
  auto model = Model::Load(Fixture(file), c10::Device(c10::kCPU));
  model->mutable_input_spec().height = size;
  model->mutable_input_spec().width = size;
  return model;
}

// Largest absolute difference relative to the reference's scale (1 + max |b|).
inline double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a - b).abs().max().item<double>() / (1.0 + b.abs().max().item<double>());
}

}  // namespace cnnviz::test
