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

class Parser : public TermParser {
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

 public:
  [[noreturn]] void Fail(const std::string& what) const override {
    throw UsageError("objective '" + text_ + "': " + what + " at position " + std::to_string(pos_ + 1));
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  void SkipSpace() {
    while (!AtEnd() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Accept(char c) override {
    SkipSpace();
    if (!AtEnd() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void Expect(char c) override {
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
  int64_t Integer() override {
    SkipSpace();
    const size_t start = pos_;
    while (!AtEnd() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    if (start == pos_) Fail("expected a non-negative integer");
    if (pos_ - start > 8) Fail("number too large (at most 99999999)");
    return std::stoll(text_.substr(start, pos_ - start));
  }
  // Layer names: module paths and aliases, e.g. "layer4.1.conv2", "features.10", "relu#1".
  std::string Name() override {
    SkipSpace();
    const size_t start = pos_;
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_' ||
                        text_[pos_] == '.' || text_[pos_] == '#')) {
      ++pos_;
    }
    if (start == pos_) Fail("expected a layer name");
    return text_.substr(start, pos_ - start);
  }
  std::string Path() override {
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

  // A keyword kind ("class:7", "dir(...)", "tv"), else LAYER ':' UNIT with an optional marker.
  ObjectiveTerm Atom() {
    ObjectiveTerm term;
    const size_t start = pos_;
    const std::string name = Name();
    // Keywords: a bare word ("tv") or a word and its opening character ("class:", "dir("), which then
    // must follow ("dir:3" is unit 3 of a layer called dir).
    for (const ObjectiveKind& kind : ObjectiveKinds()) {
      const std::string& keyword = kind.keyword;
      if (keyword.empty()) continue;
      const bool opener = !std::isalnum(static_cast<unsigned char>(keyword.back()));
      if (keyword.substr(0, keyword.size() - (opener ? 1 : 0)) != name) continue;
      if (opener && !Accept(keyword.back())) continue;
      term.kind = kind.name;
      if (kind.parse) kind.parse(*this, term);
      return term;
    }
    (void)start;
    Expect(':');
    term.layer = name;
    term.unit = Integer();
    term.kind = "channel";
    for (const ObjectiveKind& kind : ObjectiveKinds()) {
      if (!kind.keyword.empty() || kind.marker == '\0' || !Accept(kind.marker)) continue;
      term.kind = kind.name;
      if (kind.parse) kind.parse(*this, term);
      break;
    }
    return term;
  }

 private:
  const std::string& text_;
  size_t pos_ = 0;
};

at::Tensor ReadDirection(const std::string& path) {
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
    const ObjectiveKind& kind = FindObjectiveKind(term.kind);
    text += i == 0 ? (term.weight < 0 ? "-" : "") : (term.weight < 0 ? " - " : " + ");
    // A weight of 1 is implied, unless the layer's name starts like a number ("0:3", a Sequential's
    // child): then "1*" keeps the text parseable.
    const bool numeric_name = !term.layer.empty() && kind.keyword.empty() &&
                              (std::isdigit(static_cast<unsigned char>(term.layer[0])) || term.layer[0] == '.');
    if (std::abs(term.weight) != 1.0 || numeric_name) text += FormatWeight(term.weight) + "*";
    text += kind.format(term);
  }
  return text;
}

Objective ParseObjective(const std::string& text) {
  if (text.find_first_not_of(" \t") == std::string::npos) throw UsageError("objective is empty");
  return Parser(text).Parse();
}

void CheckObjective(const Objective& objective, const Probe& probe) {
  for (const ObjectiveTerm& term : objective.terms) {
    const ObjectiveKind& kind = FindObjectiveKind(term.kind);
    if (term.layer.empty()) continue;
    const LayerInfo& layer = probe.FindUnits(term.layer);
    if (term.unit < 0 || term.unit >= layer.units) {
      throw UsageError("unit " + std::to_string(term.unit) + " is out of range for layer '" + term.layer + "' (" +
                       std::to_string(layer.units) + " units: 0-" + std::to_string(layer.units - 1) + ")");
    }
    if (kind.check) kind.check(term, layer);
  }
}

std::vector<std::string> LayersOf(const std::vector<Objective>& objectives, bool* needs_output) {
  std::vector<std::string> layers;
  *needs_output = false;
  for (const auto& objective : objectives) {
    for (const auto& term : objective.terms) {
      if (FindObjectiveKind(term.kind).reads == TermReads::kOutput) *needs_output = true;
      if (!term.layer.empty() && std::find(layers.begin(), layers.end(), term.layer) == layers.end()) {
        layers.push_back(term.layer);
      }
    }
  }
  return layers;
}

const at::Tensor& TermInputs::Tap(const std::string& layer) const {
  const auto it = std::find(layers.begin(), layers.end(), layer);
  return taps.at(static_cast<size_t>(it - layers.begin()));
}

at::Tensor EvaluateObjectives(const std::vector<Objective>& objectives, const at::Tensor& image,
                              const std::vector<std::string>& layers, const std::vector<at::Tensor>& taps,
                              const at::Tensor& logits) {
  const int64_t n = static_cast<int64_t>(objectives.size());
  const TermInputs inputs{image, layers, taps, logits};
  std::map<std::string, size_t> tap_index;
  for (size_t i = 0; i < layers.size(); ++i) tap_index[layers[i]] = i;
  // Channel means are gathered per layer with one indexing op: the common whole-layer case.
  std::map<size_t, std::tuple<std::vector<int64_t>, std::vector<int64_t>, std::vector<double>>> channel;
  std::vector<at::Tensor> values(n);
  for (int64_t i = 0; i < n; ++i) {
    for (const ObjectiveTerm& term : objectives[i].terms) {
      const ObjectiveKind& kind = FindObjectiveKind(term.kind);
      if (kind.gathered_channel_mean) {
        auto& [rows, units, weights] = channel[tap_index.at(term.layer)];
        rows.push_back(i);
        units.push_back(term.unit);
        weights.push_back(term.weight);
        continue;
      }
      const at::Tensor v = kind.evaluate(term, inputs, i) * term.weight;
      values[i] = values[i].defined() ? values[i] + v : v;
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

// ----------------------------------------------------------------------------------- the registry
// Each kind below is one definition; ObjectiveKinds() lists them.
namespace {

std::string UnitText(const ObjectiveTerm& term) { return term.layer + ":" + std::to_string(term.unit); }

const ObjectiveKind kChannel{
    "channel", "LAYER:UNIT", "mean of the unit's feature map (Olah et al.)", TermReads::kChannel, "", '\0',
    nullptr, UnitText, nullptr, nullptr, /*gathered_channel_mean=*/true};

const ObjectiveKind kNeuron{
    "neuron", "LAYER:UNIT@Y,X", "the unit at one spatial position (Erhan et al.)", TermReads::kChannel, "", '@',
    [](TermParser& in, ObjectiveTerm& term) {
      term.y = in.Integer();
      in.Expect(',');
      term.x = in.Integer();
    },
    [](const ObjectiveTerm& term) { return UnitText(term) + "@" + std::to_string(term.y) + "," + std::to_string(term.x); },
    [](const ObjectiveTerm& term, const LayerInfo& layer) {
      if (layer.shape.size() != 4) throw UsageError("layer '" + term.layer + "' has no spatial extent: use a channel objective");
    },
    [](const ObjectiveTerm& term, const TermInputs& in, int64_t i) {
      const at::Tensor map = in.Tap(term.layer)[i][term.unit];
      if (term.y >= map.size(0) || term.x >= map.size(1)) {
        throw UsageError("neuron " + term.layer + ":" + std::to_string(term.unit) + "@" + std::to_string(term.y) + "," +
                         std::to_string(term.x) + " is outside the layer's " + std::to_string(map.size(0)) + "x" +
                         std::to_string(map.size(1)) + " map at this image size");
      }
      const int64_t y = term.y < 0 ? map.size(0) / 2 : term.y;
      const int64_t x = term.x < 0 ? map.size(1) / 2 : term.x;
      return map[y][x];
    }};

const ObjectiveKind kClass{
    "class", "class:K", "the model's output K, pre-softmax (Simonyan et al.)", TermReads::kOutput, "class:", '\0',
    [](TermParser& in, ObjectiveTerm& term) { term.unit = in.Integer(); },
    [](const ObjectiveTerm& term) { return "class:" + std::to_string(term.unit); }, nullptr,
    [](const ObjectiveTerm& term, const TermInputs& in, int64_t i) { return in.logits[i][term.unit]; }};

const ObjectiveKind kDirection{
    "direction", "dir(LAYER,PATH)",
    "dot product of the channel vector (mean over positions) with the vector in PATH (numbers, one per unit)",
    TermReads::kLayer, "dir(", '\0',
    [](TermParser& in, ObjectiveTerm& term) {
      term.layer = in.Name();
      in.Expect(',');
      term.path = in.Path();
      in.Expect(')');
      term.direction = ReadDirection(term.path);
    },
    [](const ObjectiveTerm& term) { return "dir(" + term.layer + "," + term.path + ")"; },
    [](const ObjectiveTerm& term, const LayerInfo& layer) {
      if (term.direction.numel() != layer.units) {
        throw UsageError("direction '" + term.path + "' has " + std::to_string(term.direction.numel()) +
                         " values but layer '" + term.layer + "' has " + std::to_string(layer.units) + " units");
      }
    },
    [](const ObjectiveTerm& term, const TermInputs& in, int64_t i) {
      at::Tensor activation = in.Tap(term.layer)[i];
      if (activation.dim() == 3) activation = activation.mean(at::IntArrayRef{1, 2});
      return at::dot(activation, term.direction.to(activation.device()));
    }};

const ObjectiveKind kTotalVariation{
    "tv", "tv", "total variation of the image (beta = 2); subtract it", TermReads::kImage, "tv", '\0', nullptr,
    [](const ObjectiveTerm&) { return std::string("tv"); }, nullptr,
    [](const ObjectiveTerm&, const TermInputs& in, int64_t i) {
      const at::Tensor element_image = in.image[i];
      const at::Tensor dy = element_image.slice(1, 1) - element_image.slice(1, 0, -1);
      const at::Tensor dx = element_image.slice(2, 1) - element_image.slice(2, 0, -1);
      return dy.pow(2).mean() + dx.pow(2).mean();
    }};

const ObjectiveKind kL2{
    "l2", "l2", "mean squared distance of the image from grey; subtract it", TermReads::kImage, "l2", '\0', nullptr,
    [](const ObjectiveTerm&) { return std::string("l2"); }, nullptr,
    [](const ObjectiveTerm&, const TermInputs& in, int64_t i) { return (in.image[i] - 0.5).pow(2).mean(); }};

const ObjectiveKind kAlphaNorm{
    "alpha", "alpha", "alpha-norm of the image around grey (alpha = 6); subtract it", TermReads::kImage, "alpha", '\0',
    nullptr, [](const ObjectiveTerm&) { return std::string("alpha"); }, nullptr,
    [](const ObjectiveTerm&, const TermInputs& in, int64_t i) { return (in.image[i] - 0.5).abs().pow(kAlpha).mean(); }};

}  // namespace

const std::vector<ObjectiveKind>& ObjectiveKinds() {
  static const std::vector<ObjectiveKind> kinds = {kChannel, kNeuron, kClass, kDirection, kTotalVariation, kL2, kAlphaNorm};
  return kinds;
}

const ObjectiveKind& FindObjectiveKind(const std::string& name) {
  for (const ObjectiveKind& kind : ObjectiveKinds()) {
    if (kind.name == name) return kind;
  }
  throw UsageError("unknown objective term kind '" + name + "'");
}

std::string ObjectiveHelp() {
  std::string text;
  for (const ObjectiveKind& kind : ObjectiveKinds()) text += "  " + kind.syntax + ": " + kind.description + "\n";
  return text;
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
