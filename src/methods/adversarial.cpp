#include "cnnviz/methods/adversarial.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include "cnnviz/core/error.h"
#include "cnnviz/model/model.h"

namespace cnnviz {

void AttackOptions::Check() const {
  if (attack != "fgsm" && attack != "pgd") throw UsageError("--attack must be fgsm or pgd, not '" + attack + "'");
  if (!(epsilon > 0)) throw UsageError("--epsilon must be positive");
  if (steps < 1) throw UsageError("--steps must be at least 1");
  if (step_size < 0) throw UsageError("--step-size must be >= 0 (0 = 2.5 epsilon / steps)");
}

namespace {

// Per-image L2 norms of [N, ...] as [N, 1, 1, 1].
at::Tensor Norms(const at::Tensor& x) { return x.flatten(1).norm(2, 1).clamp_min(1e-12).view({-1, 1, 1, 1}); }

// delta projected into the budget.
at::Tensor Project(const at::Tensor& delta, AttackNorm norm, double epsilon) {
  if (norm == AttackNorm::kLinf) return delta.clamp(-epsilon, epsilon);
  return delta * (epsilon / Norms(delta)).clamp_max(1.0);
}

// One step along the gradient: its sign (L-inf) or its direction (L2), of length `size`.
at::Tensor Step(const at::Tensor& gradient, AttackNorm norm, double size) {
  if (norm == AttackNorm::kLinf) return gradient.sign() * size;
  return gradient / Norms(gradient) * size;
}

}  // namespace

AttackResult AdversarialAttack::Run(const at::Tensor& images, const at::Tensor& labels, const AttackOptions& options) const {
  options.Check();
  const Model& model = probe_.model();
  const ViewSpec view{{}, true};
  const at::Tensor x = images.to(model.device(), at::kFloat);
  AttackResult result;
  {
    at::NoGradGuard no_grad;
    result.clean_logits = probe_.Run(view, model.Preprocess(x)).output;
  }
  if (!result.clean_logits.defined() || result.clean_logits.dim() != 2 || result.clean_logits.size(1) < 2) {
    throw UsageError("the model has no class output (logits [N, C]): an attack needs classes to move between");
  }
  const at::Tensor y = labels.defined() ? labels.to(model.device(), at::kLong) : result.clean_logits.argmax(1);
  const int64_t classes = result.clean_logits.size(1);
  if (options.target >= classes) {
    throw UsageError("--target " + std::to_string(options.target) + " is out of range (the model has " +
                     std::to_string(classes) + " classes: 0-" + std::to_string(classes - 1) + ")");
  }
  const bool targeted = options.target >= 0;
  const at::Tensor goal = targeted ? at::full_like(y, options.target) : y;
  // The loss the attack ascends: the label's cross-entropy (untargeted) or minus the target's.
  auto gradient = [&](const at::Tensor& point) {
    at::AutoGradMode enable(true);  // also when the caller runs without gradients
    at::Tensor input = point.detach().requires_grad_(true);
    // Channels-last on a CPU (Model::GradientLayout): resnet18 at 224 px, batch 16, 1.17 -> 0.84 s per step.
    const at::Tensor logits = probe_.Run(view, model.GradientLayout(model.Preprocess(input))).output;
    at::Tensor loss = at::cross_entropy_loss(logits, goal, {}, at::Reduction::Sum);
    if (targeted) loss = -loss;
    return torch::autograd::grad({loss}, {input})[0];
  };
  at::Tensor adversarial;
  if (options.attack == "fgsm") {
    adversarial = (x + Step(gradient(x), options.norm, options.epsilon)).clamp(0, 1);
  } else {
    at::Tensor delta = at::zeros_like(x);
    if (options.random_start) {
      auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed * 6364136223846793005ULL + 1);
      at::Tensor start = at::rand(x.sizes(), generator, at::TensorOptions().dtype(at::kFloat)) * 2 - 1;
      if (options.norm == AttackNorm::kL2) {
        // Uniform in the L2 ball: a uniform direction and a radius epsilon * u^(1/d).
        const at::Tensor direction = at::randn(x.sizes(), generator, at::TensorOptions().dtype(at::kFloat));
        const double d = static_cast<double>(x[0].numel());
        const at::Tensor radius = at::rand({x.size(0), 1, 1, 1}, generator, at::TensorOptions().dtype(at::kFloat)).pow(1.0 / d);
        start = direction / Norms(direction) * radius;
      }
      delta = (start.to(x.device()) * options.epsilon);
      delta = (x + delta).clamp(0, 1) - x;
    }
    const double size = options.step_size > 0 ? options.step_size : 2.5 * options.epsilon / options.steps;
    for (int64_t step = 0; step < options.steps; ++step) {
      const at::Tensor g = gradient(x + delta);
      delta = Project(delta + Step(g, options.norm, size), options.norm, options.epsilon);
      delta = (x + delta).clamp(0, 1) - x;  // the valid pixel range
    }
    adversarial = x + delta;
  }
  {
    at::NoGradGuard no_grad;
    result.adversarial_logits = probe_.Run(view, model.Preprocess(adversarial)).output;
  }
  const at::Tensor predicted = result.adversarial_logits.argmax(1);
  result.success = (targeted ? predicted == goal : predicted != y).cpu();
  result.adversarial = adversarial.detach().cpu();
  result.clean_logits = result.clean_logits.cpu();
  result.adversarial_logits = result.adversarial_logits.cpu();
  return result;
}

LayerDivergence Divergence(const std::string& layer, const at::Tensor& clean_tap, const at::Tensor& adversarial_tap) {
  const at::Tensor u = clean_tap.detach().flatten(1).to(at::kCPU, at::kDouble);
  const at::Tensor v = adversarial_tap.detach().flatten(1).to(at::kCPU, at::kDouble);
  const at::Tensor norm_u = u.norm(2, 1), norm_v = v.norm(2, 1);
  LayerDivergence d;
  d.layer = layer;
  d.relative_l2 = (v - u).norm(2, 1) / norm_u.clamp_min(1e-300);
  d.cosine = (u * v).sum(1) / (norm_u * norm_v).clamp_min(1e-300);
  return d;
}

std::vector<LayerDivergence> LayerDivergences(const Probe& probe, const at::Tensor& clean, const at::Tensor& adversarial,
                                              const std::vector<std::string>& layers) {
  const Model& model = probe.model();
  at::NoGradGuard no_grad;
  const ViewSpec view{layers, false};
  const ProbeOutput a = probe.Run(view, model.Preprocess(clean.to(model.device(), at::kFloat)));
  const ProbeOutput b = probe.Run(view, model.Preprocess(adversarial.to(model.device(), at::kFloat)));
  std::vector<LayerDivergence> out;
  for (size_t l = 0; l < layers.size(); ++l) out.push_back(Divergence(layers[l], a.taps[l], b.taps[l]));
  return out;
}

}  // namespace cnnviz
