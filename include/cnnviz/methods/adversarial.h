// Adversarial examples (issue 20, the library part): FGSM (Goodfellow et al., 2015) and PGD (Madry et
// al., 2018) under L-inf or L2 budgets, untargeted or targeted, in image space [0, 1] (the model's own
// range and normalization are applied by Model::Preprocess, so epsilon is in units of [0, 1] pixels:
// 8/255 is eight 8-bit steps); and how far each layer's activations move under an attack.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cnnviz/model/probe.h"

namespace cnnviz {

enum class AttackNorm { kLinf, kL2 };

struct AttackOptions {
  std::string attack = "pgd";      // fgsm | pgd
  AttackNorm norm = AttackNorm::kLinf;
  double epsilon = 8.0 / 255.0;    // budget: max |delta| (L-inf) or ||delta||_2 per image (L2)
  int64_t steps = 10;              // PGD iterations (FGSM: one step of size epsilon)
  double step_size = 0;            // PGD step; 0 = 2.5 epsilon / steps (Madry et al.)
  bool random_start = true;        // PGD starts from a uniform point of the ball
  int64_t target = -1;             // targeted attack toward this class; -1 = untargeted (away from `labels`)
  uint64_t seed = 0;               // the random start
  void Check() const;
};

struct AttackResult {
  at::Tensor adversarial;         // [N,3,H,W] in [0, 1], CPU
  at::Tensor clean_logits;        // [N, C]
  at::Tensor adversarial_logits;  // [N, C]
  at::Tensor success;             // [N] bool: prediction changed away from the label (untargeted) or to the target
};

class AdversarialAttack {
 public:
  explicit AdversarialAttack(const Probe& probe) : probe_(probe) {}
  // Attacks `images` [N,3,H,W] in [0, 1] at the model's input size; `labels` [N] int64 are the classes
  // to move away from (untargeted; undefined = the clean predictions, computed by the same forward
  // pass the attack starts from). Throws
  // UsageError for a model without a class output [N, C], a target outside the classes, epsilon <= 0.
  AttackResult Run(const at::Tensor& images, const at::Tensor& labels, const AttackOptions& options) const;

 private:
  const Probe& probe_;
};

// Per layer and image, how far the adversarial activations are from the clean ones:
// ||a' - a|| / ||a|| and cos(a, a') over the whole tap (CPU double).
struct LayerDivergence {
  std::string layer;
  at::Tensor relative_l2;  // [N]
  at::Tensor cosine;       // [N]
};
// The same for one layer's taps [N, ...] of the clean and the adversarial images (any device).
LayerDivergence Divergence(const std::string& layer, const at::Tensor& clean_tap, const at::Tensor& adversarial_tap);
std::vector<LayerDivergence> LayerDivergences(const Probe& probe, const at::Tensor& clean, const at::Tensor& adversarial,
                                              const std::vector<std::string>& layers);

}  // namespace cnnviz
