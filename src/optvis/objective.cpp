#include "cnnviz/optvis/objective.h"

#include <ATen/ATen.h>

#include <cctype>
#include <fstream>
#include <map>
#include <sstream>

#include "cnnviz/core/error.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {
namespace {

constexpr double kAlpha = 6.0;  // Mahendran & Vedaldi's alpha-norm exponent

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  Objective Parse() {
    Objective objective;
    double sign = 1.0;
    SkipSpace();
    if (Accept('-')) sign = -1.0;
    for (;;) {
      ObjectiveTerm term = Term();
      term.weight *= sign;
      objective.terms.push_back(term);
      SkipSpace();
      if (AtEnd()) break;
      if (Accept('+')) {
        sign = 1.0;
      } else if (Accept('-')) {
        sign = -1.0;
      } else {
        Fail("expected '+' or '-'");
      }
    }
    return objective;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw UsageError("objective '" + text_ + "': " + what + " at position " + std::to_string(pos_ + 1));
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  void SkipSpace() {
    while (!AtEnd() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Accept(char c) {
    SkipSpace();
    if (!AtEnd() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void Expect(char c) {
    if (!Accept(c)) Fail(std::string("expected '") + c + "'");
  }
  bool StartsNumber() const {
    return !AtEnd() && (std::isdigit(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.');
  }
  double Number() {
    SkipSpace();
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(text_.substr(pos_), &used);
    } catch (const std::exception&) {
      Fail("expected a number");
    }
    pos_ += used;
    return value;
  }
  int64_t Integer() {
    SkipSpace();
    const size_t start = pos_;
    while (!AtEnd() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    if (start == pos_) Fail("expected a non-negative integer");
    if (pos_ - start > 8) Fail("number too large (at most 99999999)");
    return std::stoll(text_.substr(start, pos_ - start));
  }
  // Layer names: module paths and aliases, e.g. "layer4.1.conv2", "features.10", "relu#1".
  std::string Name() {
    SkipSpace();
    const size_t start = pos_;
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_' ||
                        text_[pos_] == '.' || text_[pos_] == '#')) {
      ++pos_;
    }
    if (start == pos_) Fail("expected a layer name");
    return text_.substr(start, pos_ - start);
  }
  std::string Path() {
    SkipSpace();
    const size_t start = pos_;
    while (!AtEnd() && text_[pos_] != ')') ++pos_;
    std::string path = text_.substr(start, pos_ - start);
    while (!path.empty() && std::isspace(static_cast<unsigned char>(path.back()))) path.pop_back();
    if (path.empty()) Fail("expected a file path");
    return path;
  }

  ObjectiveTerm Term() {
    SkipSpace();
    double weight = 1.0;
    if (StartsNumber()) {
      weight = Number();
      Expect('*');
    }
    ObjectiveTerm term = Atom();
    term.weight = weight;
    return term;
  }

  ObjectiveTerm Atom() {
    ObjectiveTerm term;
    const std::string name = Name();
    if (name == "tv" || name == "l2" || name == "alpha") {
      term.kind = name == "tv" ? ObjectiveTerm::Kind::kTotalVariation
                               : (name == "l2" ? ObjectiveTerm::Kind::kL2 : ObjectiveTerm::Kind::kAlphaNorm);
      return term;
    }
    if (name == "dir" && Accept('(')) {
      term.kind = ObjectiveTerm::Kind::kDirection;
      term.layer = Name();
      Expect(',');
      term.path = Path();
      Expect(')');
      term.direction = ReadDirection(term.path);
      return term;
    }
    Expect(':');
    if (name == "class") {
      term.kind = ObjectiveTerm::Kind::kClass;
      term.unit = Integer();
      return term;
    }
    term.layer = name;
    term.unit = Integer();
    if (Accept('@')) {
      term.kind = ObjectiveTerm::Kind::kNeuron;
      term.y = Integer();
      Expect(',');
      term.x = Integer();
    }
    return term;
  }

  static at::Tensor ReadDirection(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw InputError("direction file '" + path + "' cannot be read");
    std::vector<double> values;
    std::string token;
    while (in >> token) {
      for (char& c : token) {
        if (c == ',') c = ' ';
      }
      std::istringstream parts(token);
      for (std::string part; parts >> part;) {
        try {
          values.push_back(std::stod(part));
        } catch (const std::exception&) {
          throw InputError("direction file '" + path + "': '" + part + "' is not a number");
        }
      }
    }
    if (values.empty()) throw InputError("direction file '" + path + "' holds no numbers");
    return at::tensor(values, at::kFloat);
  }

  const std::string& text_;
  size_t pos_ = 0;
};

std::string FormatWeight(double weight) {
  std::ostringstream out;
  out << std::abs(weight);
  return out.str();
}

}  // namespace

std::string Objective::ToString() const {
  std::string text;
  for (size_t i = 0; i < terms.size(); ++i) {
    const ObjectiveTerm& term = terms[i];
    text += i == 0 ? (term.weight < 0 ? "-" : "") : (term.weight < 0 ? " - " : " + ");
    // A weight of 1 is implied, unless the layer's name starts like a number ("0:3", a Sequential's
    // child): then "1*" keeps the text parseable.
    const bool numeric_name = !term.layer.empty() && (term.kind == ObjectiveTerm::Kind::kChannel ||
                                                      term.kind == ObjectiveTerm::Kind::kNeuron) &&
                              (std::isdigit(static_cast<unsigned char>(term.layer[0])) || term.layer[0] == '.');
    if (std::abs(term.weight) != 1.0 || numeric_name) text += FormatWeight(term.weight) + "*";
    switch (term.kind) {
      case ObjectiveTerm::Kind::kChannel:
        text += term.layer + ":" + std::to_string(term.unit);
        break;
      case ObjectiveTerm::Kind::kNeuron:
        text += term.layer + ":" + std::to_string(term.unit) + "@" + std::to_string(term.y) + "," + std::to_string(term.x);
        break;
      case ObjectiveTerm::Kind::kClass:
        text += "class:" + std::to_string(term.unit);
        break;
      case ObjectiveTerm::Kind::kDirection:
        text += "dir(" + term.layer + "," + term.path + ")";
        break;
      case ObjectiveTerm::Kind::kTotalVariation:
        text += "tv";
        break;
      case ObjectiveTerm::Kind::kL2:
        text += "l2";
        break;
      case ObjectiveTerm::Kind::kAlphaNorm:
        text += "alpha";
        break;
    }
  }
  return text;
}

Objective ParseObjective(const std::string& text) {
  if (text.find_first_not_of(" \t") == std::string::npos) throw UsageError("objective is empty");
  return Parser(text).Parse();
}

void CheckObjective(const Objective& objective, const Probe& probe) {
  for (const ObjectiveTerm& term : objective.terms) {
    if (term.layer.empty()) continue;
    const LayerInfo& layer = probe.FindUnits(term.layer);
    if (term.unit < 0 || term.unit >= layer.units) {
      throw UsageError("unit " + std::to_string(term.unit) + " is out of range for layer '" + term.layer + "' (" +
                       std::to_string(layer.units) + " units: 0-" + std::to_string(layer.units - 1) + ")");
    }
    if (term.kind == ObjectiveTerm::Kind::kDirection && term.direction.numel() != layer.units) {
      throw UsageError("direction '" + term.path + "' has " + std::to_string(term.direction.numel()) +
                       " values but layer '" + term.layer + "' has " + std::to_string(layer.units) + " units");
    }
    if (term.kind == ObjectiveTerm::Kind::kNeuron && layer.shape.size() != 4) {
      throw UsageError("layer '" + term.layer + "' has no spatial extent: use a channel objective");
    }
  }
}

std::vector<std::string> LayersOf(const std::vector<Objective>& objectives, bool* needs_output) {
  std::vector<std::string> layers;
  *needs_output = false;
  for (const auto& objective : objectives) {
    for (const auto& term : objective.terms) {
      if (term.kind == ObjectiveTerm::Kind::kClass) *needs_output = true;
      if (!term.layer.empty() && std::find(layers.begin(), layers.end(), term.layer) == layers.end()) {
        layers.push_back(term.layer);
      }
    }
  }
  return layers;
}

at::Tensor EvaluateObjectives(const std::vector<Objective>& objectives, const at::Tensor& image,
                              const std::vector<std::string>& layers, const std::vector<at::Tensor>& taps,
                              const at::Tensor& logits) {
  using Kind = ObjectiveTerm::Kind;
  const int64_t n = static_cast<int64_t>(objectives.size());
  std::map<std::string, size_t> tap_index;
  for (size_t i = 0; i < layers.size(); ++i) tap_index[layers[i]] = i;
  // Channel terms are gathered per layer with one indexing op: the common whole-layer case.
  std::map<size_t, std::tuple<std::vector<int64_t>, std::vector<int64_t>, std::vector<double>>> channel;
  std::vector<at::Tensor> values(n);
  auto add = [&](int64_t i, const at::Tensor& v) { values[i] = values[i].defined() ? values[i] + v : v; };
  for (int64_t i = 0; i < n; ++i) {
    for (const ObjectiveTerm& term : objectives[i].terms) {
      const at::Tensor element_image = image[i];
      switch (term.kind) {
        case Kind::kChannel: {
          auto& [rows, units, weights] = channel[tap_index.at(term.layer)];
          rows.push_back(i);
          units.push_back(term.unit);
          weights.push_back(term.weight);
          break;
        }
        case Kind::kNeuron: {
          const at::Tensor map = taps[tap_index.at(term.layer)][i][term.unit];
          if (term.y >= map.size(0) || term.x >= map.size(1)) {
            throw UsageError("neuron " + term.layer + ":" + std::to_string(term.unit) + "@" + std::to_string(term.y) +
                             "," + std::to_string(term.x) + " is outside the layer's " + std::to_string(map.size(0)) +
                             "x" + std::to_string(map.size(1)) + " map at this image size");
          }
          const int64_t y = term.y < 0 ? map.size(0) / 2 : term.y;
          const int64_t x = term.x < 0 ? map.size(1) / 2 : term.x;
          add(i, map[y][x] * term.weight);
          break;
        }
        case Kind::kClass:
          add(i, logits[i][term.unit] * term.weight);
          break;
        case Kind::kDirection: {
          at::Tensor activation = taps[tap_index.at(term.layer)][i];
          if (activation.dim() == 3) activation = activation.mean(at::IntArrayRef{1, 2});
          add(i, at::dot(activation, term.direction.to(activation.device())) * term.weight);
          break;
        }
        case Kind::kTotalVariation: {
          const at::Tensor dy = element_image.slice(1, 1) - element_image.slice(1, 0, -1);
          const at::Tensor dx = element_image.slice(2, 1) - element_image.slice(2, 0, -1);
          add(i, (dy.pow(2).mean() + dx.pow(2).mean()) * term.weight);
          break;
        }
        case Kind::kL2:
          add(i, (element_image - 0.5).pow(2).mean() * term.weight);
          break;
        case Kind::kAlphaNorm:
          add(i, (element_image - 0.5).abs().pow(kAlpha).mean() * term.weight);
          break;
      }
    }
  }
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < n; ++i) {
    parts.push_back(values[i].defined() ? values[i].reshape({}) : at::zeros({}, image.options()));
  }
  at::Tensor result = at::stack(parts);
  for (const auto& [index, entries] : channel) {
    const auto& [rows, units, weights] = entries;
    const at::Tensor& tap = taps[index];
    const auto device = tap.device();
    const at::Tensor row_index = at::tensor(rows, at::kLong).to(device);
    const at::Tensor unit_index = at::tensor(units, at::kLong).to(device);
    at::Tensor selected = tap.index({row_index, unit_index});  // [k, H, W] or [k]
    if (selected.dim() > 1) selected = selected.flatten(1).mean(1);
    selected = selected * at::tensor(weights, tap.options());
    result = result.index_add(0, row_index, selected);
  }
  return result;
}

at::Tensor DiversityPenalty(const at::Tensor& activations, int64_t group) {
  const int64_t n = activations.size(0);
  at::Tensor flat = activations.flatten(2);                        // [N, C, HW]
  at::Tensor grams = at::bmm(flat, flat.transpose(1, 2)).flatten(1);  // [N, C*C]
  grams = grams / grams.norm(2, 1, true).clamp_min(1e-10);
  at::Tensor penalty = at::zeros({n}, activations.options());
  for (int64_t start = 0; start + group <= n; start += group) {
    const at::Tensor g = grams.slice(0, start, start + group);
    // Each element is pushed away from the others as they are (their side is not differentiated), so
    // an element's gradient comes from its own share alone and a caller can weight or gate it.
    const at::Tensor similarity = at::mm(g, g.detach().t());
    const at::Tensor off_diagonal = similarity.sum(1) - similarity.diagonal();
    penalty = penalty.index_add(0, at::arange(start, start + group, at::TensorOptions().dtype(at::kLong).device(penalty.device())),
                                off_diagonal / static_cast<double>(std::max<int64_t>(group - 1, 1)));
  }
  return penalty;
}

}  // namespace cnnviz
