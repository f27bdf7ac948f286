#include "cnnviz/methods/network_inversion.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>

#include "cnnviz/core/error.h"

namespace cnnviz {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kPowerIterations = 12;
// Step of the finite-difference Jacobian-vector products, relative to the start's norm σ: small against
// the image, large against float32 rounding of the features (relative noise ~1e-7/1e-3).
constexpr double kFiniteDifferenceStep = 1e-3;

bool IsParameterLayer(const LayerInfo& layer) {
  return layer.type.rfind("Conv", 0) == 0 || layer.type == "Linear";
}

// Index of a layer in the catalogue, for grouping by depth.
int64_t LayerIndex(const Probe& probe, const std::string& name) {
  const LayerInfo& info = probe.Find(name);
  const auto& layers = probe.layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].name == info.name) return static_cast<int64_t>(i);
  }
  return 0;
}

// Learning rate of step `step` (1-based): lr, lr/10 after a quarter, lr/100 after three quarters.
double ScheduledRate(double lr, int64_t step, int64_t steps) {
  const int64_t first = std::max<int64_t>(1, steps / 4), second = std::max<int64_t>(first, (3 * steps) / 4);
  if (step <= first) return lr;
  if (step <= second) return lr * 0.1;
  return lr * 0.01;
}

}  // namespace

void InversionOptions::Check() const {
  if (layers.empty()) throw UsageError("--layer/--layers: name at least one layer to invert");
  if (steps < 1) throw UsageError("--steps must be at least 1");
  if (!(learning_rate > 0)) throw UsageError("--lr must be positive");
  if (momentum < 0 || momentum >= 1) throw UsageError("--momentum must be in [0, 1)");
  if (!(alpha >= 1)) throw UsageError("--alpha must be at least 1");
  if (!(beta > 0)) throw UsageError("--beta must be positive");
  if (lambda_alpha < 0 || (lambda_tv && *lambda_tv < 0)) throw UsageError("regularizer weights must be >= 0");
  if (!(pixel_norm > 0)) throw UsageError("--pixel-norm must be positive");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (target_error < 0) throw UsageError("--target-error must be >= 0");
  if (record_every < 1) throw UsageError("curve interval must be at least 1");
  if (!(prior_scale >= 0)) throw UsageError("--prior-scale must be >= 0");
  if (levels < 1 || levels > 6) throw UsageError("--levels must be in 1..6");
}

double DefaultTvWeight(const Probe& probe, const std::string& name) {
  const LayerInfo& info = probe.Find(name);
  const auto& layers = probe.layers();
  int64_t total = 0, upto = 0;
  bool reached = false;
  for (const LayerInfo& layer : layers) {
    const bool inside = layer.name.rfind(info.name + ".", 0) == 0;  // a child of a container layer
    if (IsParameterLayer(layer)) {
      ++total;
      if (!reached || inside) ++upto;
    }
    if (layer.name == info.name) reached = true;
  }
  if (total == 0) return 10.0;
  const double depth = static_cast<double>(upto) / static_cast<double>(total);
  if (depth <= 0.25) return 1.0;
  if (depth <= 0.5) return 10.0;
  return 100.0;
}

at::Tensor AlphaNorm(const at::Tensor& x, double alpha) {
  return x.abs().pow(alpha).flatten(1).sum(1);
}

at::Tensor TotalVariation(const at::Tensor& x, double beta) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const at::Tensor dx = at::cat({x.slice(3, 1) - x.slice(3, 0, w - 1), at::zeros({n, c, h, 1}, x.options())}, 3);
  const at::Tensor dy = at::cat({x.slice(2, 1) - x.slice(2, 0, h - 1), at::zeros({n, c, 1, w}, x.options())}, 2);
  at::Tensor squared = dx.pow(2) + dy.pow(2);
  // β < 2 has an infinite derivative at 0; the paper's code clamps there too.
  if (beta < 2.0) squared = squared.clamp_min(1e-10);
  return (beta == 2.0 ? squared : squared.pow(beta / 2.0)).flatten(1).sum(1);
}

namespace {

// L-BFGS (history 20, backtracking line search on the Armijo condition, at most 10 halvings) on one flat
// variable. `f` returns the energy and writes its gradient; `after` sees every accepted iterate and returns
// true to stop. Stops early when the line search fails or the energy has fallen by less than 1e-6 of
// itself over 5 iterations (a coarse level that cannot do better: measured, it otherwise spent up to 19
// halvings per iteration for nothing). Returns the iterations taken.
int64_t MinimizeLbfgs(at::Tensor& p, int64_t iterations,
                      const std::function<double(const at::Tensor&, at::Tensor*)>& f,
                      const std::function<bool(int64_t, double)>& after) {
  constexpr size_t kHistory = 20;
  constexpr double kArmijo = 1e-4;
  std::vector<at::Tensor> s_list, y_list;
  std::vector<double> rho;
  at::Tensor g;
  double value = f(p, &g);
  std::vector<double> values{value};
  for (int64_t k = 1; k <= iterations; ++k) {
    // Two-loop recursion: d = -H g.
    at::Tensor q = g.clone();
    std::vector<double> a(s_list.size());
    for (size_t i = s_list.size(); i-- > 0;) {
      a[i] = rho[i] * s_list[i].dot(q).item<double>();
      q.sub_(y_list[i], a[i]);
    }
    double t = 1.0;
    if (s_list.empty()) {
      t = 1.0 / std::max(g.abs().sum().item<double>(), 1e-30);  // a first step of L1 norm 1
    } else {
      q.mul_(s_list.back().dot(y_list.back()).item<double>() / y_list.back().dot(y_list.back()).item<double>());
    }
    for (size_t i = 0; i < s_list.size(); ++i) {
      const double b = rho[i] * y_list[i].dot(q).item<double>();
      q.add_(s_list[i], a[i] - b);
    }
    at::Tensor d = -q;
    double slope = g.dot(d).item<double>();
    if (!(slope < 0)) {  // not a descent direction: restart from the gradient
      s_list.clear();
      y_list.clear();
      rho.clear();
      d = -g;
      slope = g.dot(d).item<double>();
      t = 1.0 / std::max(g.abs().sum().item<double>(), 1e-30);
    }
    if (!(slope < 0)) return k - 1;  // zero gradient
    at::Tensor next, next_g;
    double next_value = 0;
    bool accepted = false;
    for (int tries = 0; tries < 10; ++tries) {
      next = p + t * d;
      next_value = f(next, &next_g);
      if (std::isfinite(next_value) && next_value <= value + kArmijo * t * slope) {
        accepted = true;
        break;
      }
      t *= 0.5;
    }
    if (!accepted) return k - 1;  // no decrease along d: converged to float precision
    at::Tensor s = next - p, y = next_g - g;
    const double sy = s.dot(y).item<double>();
    // Relative: the energy's gradients in 0-255 pixel units are small, an absolute threshold kept nothing.
    if (sy > 1e-10 * y.dot(y).item<double>()) {
      if (s_list.size() == kHistory) {
        s_list.erase(s_list.begin());
        y_list.erase(y_list.begin());
        rho.erase(rho.begin());
      }
      s_list.push_back(s);
      y_list.push_back(y);
      rho.push_back(1.0 / sy);
    }
    p = next;
    g = next_g;
    value = next_value;
    values.push_back(value);
    if (after(k, value)) return k;
    if (values.size() > 5 && values[values.size() - 6] - value < 1e-6 * std::abs(value)) return k;
  }
  return iterations;
}

}  // namespace

InversionResult NetworkInversion::Run(const at::Tensor& image, const InversionOptions& options,
                                      const Progress& progress) const {
  options.Check();
  const auto started = Clock::now();
  const Model& model = probe_.model();
  CheckPrecision(options.precision, model.device());
  const InputSpec& spec = model.input_spec();
  // The network's pass: at options.precision for the iterations' gradient evaluations (`stepping`), in
  // float32 for the targets, the curvature estimate and the final evaluation; taps come back float32.
  bool stepping = true;
  auto run_view = [&](const ViewSpec& view, const at::Tensor& input) {
    const bool reduced = options.precision != Precision::kFp32 && stepping && at::GradMode::is_enabled();
    ProbeOutput out;
    {
      const AutocastGuard autocast(reduced ? options.precision : Precision::kFp32, model.device(),
                                   /*float32_input_layer=*/true);
      out = probe_.Run(view, input);
    }
    if (reduced) {
      for (at::Tensor& tap : out.taps) tap = tap.to(at::kFloat);
    }
    return out;
  };
  if (image.dim() != 3 || image.size(0) != 3) {
    std::string shape;
    for (int64_t i = 0; i < image.dim(); ++i) shape += (i ? "x" : "") + std::to_string(image.size(i));
    throw InputError("the image must be 3-channel RGB [3,H,W], got " + shape);
  }
  if (spec.channels != 3) {
    throw ModelError("inversion needs a 3-channel (RGB) model; this one takes " + std::to_string(spec.channels) +
                     " channel(s)");
  }
  const at::TensorOptions float_options = at::TensorOptions().dtype(at::kFloat).device(model.device());
  InversionResult result;
  at::Tensor original = image.to(at::kFloat).unsqueeze(0);
  if (original.size(2) != spec.height || original.size(3) != spec.width) {
    original = at::upsample_bilinear2d(original, {spec.height, spec.width}, false);
  }
  original = original.clamp(0, 1);
  result.original = original[0].to(at::kCPU);
  original = original.to(model.device());

  // The optimization variable is the image in 0–255 units minus the model's mean colour (the input that
  // preprocesses to 0), as in the paper; clamped into [0.05, 0.95] for models without a mean.
  const at::Tensor mean = model.Deprocess(at::zeros({1, spec.channels, 1, 1}, float_options)).clamp(0.05, 0.95);
  auto to_image = [&](const at::Tensor& u) { return u / 255.0 + mean; };
  const double sigma = options.pixel_norm * std::sqrt(static_cast<double>(spec.height * spec.width));
  const double sigma2 = sigma * sigma;

  // Elements in depth order, grouped; each group is one batch with one view.
  struct Element {
    size_t index;  // in options.layers
    int64_t depth;
    std::string name;
    double lambda_tv;
  };
  std::vector<Element> elements;
  for (size_t i = 0; i < options.layers.size(); ++i) {
    const std::string& name = options.layers[i];
    probe_.Find(name);  // unknown layers fail before any work
    elements.push_back({i, LayerIndex(probe_, name), name,
                        options.lambda_tv ? *options.lambda_tv : DefaultTvWeight(probe_, name)});
  }
  std::stable_sort(elements.begin(), elements.end(),
                   [](const Element& a, const Element& b) { return a.depth < b.depth; });
  result.layers.resize(options.layers.size());
  const int64_t total = static_cast<int64_t>(elements.size());
  const int64_t groups = (total + options.batch - 1) / options.batch;

  for (int64_t g = 0; g < groups; ++g) {
    const auto group_started = Clock::now();
    const int64_t begin = g * options.batch, end = std::min(total, begin + options.batch);
    const int64_t n = end - begin;
    std::vector<std::string> taps;
    std::vector<int64_t> tap_of(n);
    for (int64_t i = 0; i < n; ++i) {
      const std::string& name = probe_.Find(elements[begin + i].name).name;
      auto found = std::find(taps.begin(), taps.end(), name);
      tap_of[i] = found - taps.begin();
      if (found == taps.end()) taps.push_back(name);
    }
    const ViewSpec view{taps, !options.truncate};

    // Targets Φ0 and their squared norms.
    std::vector<at::Tensor> targets(n);
    at::Tensor target_norm2 = at::empty({n}, float_options);
    {
      at::NoGradGuard no_grad;
      const ProbeOutput out = probe_.Run(view, model.Preprocess(original));
      for (int64_t i = 0; i < n; ++i) {
        targets[i] = out.taps[tap_of[i]][0].detach();
        const double norm2 = targets[i].pow(2).sum().item<double>();
        if (!(norm2 > 0)) {
          throw ModelError("layer '" + elements[begin + i].name +
                           "' is all zeros for this image: there is nothing to invert");
        }
        target_norm2[i] = norm2;
      }
    }
    at::Tensor lambda_tv = at::empty({n}, float_options);
    for (int64_t i = 0; i < n; ++i) lambda_tv[i] = elements[begin + i].lambda_tv;

    if (!options.paper_mode) {
      // Default mode: each element alone (L-BFGS is not elementwise), coarse to fine. The variable at
      // level l is the image at 1/2^(levels-1-l) of the input size, bilinearly resized to the input; each
      // level starts from the previous one's result, the first from a seeded start of norm σ/100.
      const double prior = options.prior_scale;
      for (int64_t i = 0; i < n; ++i) {
        const auto element_started = Clock::now();
        const ViewSpec one{{taps[tap_of[i]]}, !options.truncate};
        const double lambda = elements[begin + i].lambda_tv;
        const double norm2 = target_norm2[i].item<double>();
        auto energy_of = [&](const at::Tensor& x, double* data) {
          const at::Tensor features = run_view(one, model.GradientLayout(model.Preprocess(to_image(x)))).taps[0];
          const at::Tensor distance = (features[0] - targets[i]).pow(2).sum() / norm2;
          if (data) *data = distance.item<double>();
          const at::Tensor regularizers =
              (options.lambda_alpha / 2.0) * AlphaNorm(x, options.alpha) + lambda / 2.0 * TotalVariation(x, options.beta);
          return distance + prior * regularizers.sum() / sigma2;
        };
        std::vector<std::pair<int64_t, int64_t>> sizes;
        for (int64_t l = 0; l < options.levels; ++l) {
          const int64_t shrink = int64_t{1} << (options.levels - 1 - l);
          sizes.emplace_back(std::max<int64_t>(1, (spec.height + shrink - 1) / shrink),
                             std::max<int64_t>(1, (spec.width + shrink - 1) / shrink));
        }
        auto full = [&](const at::Tensor& p, size_t level) {
          const at::Tensor x = p.view({1, spec.channels, sizes[level].first, sizes[level].second});
          return level + 1 == sizes.size() ? x : at::upsample_bilinear2d(x, {spec.height, spec.width}, false);
        };
        at::Generator generator =
            at::detail::createCPUGenerator(options.seed * 1000003ULL + elements[begin + i].index + 1);
        at::Tensor start = at::randn({1, spec.channels, sizes[0].first, sizes[0].second}, generator,
                                     at::TensorOptions().dtype(at::kFloat));
        at::Tensor p = (start / start.norm() * (sigma / 100.0)).to(model.device()).flatten();
        std::vector<float> objective_curve, error_curve;
        std::vector<int64_t> steps_recorded;
        int64_t taken = 0;
        bool reached = false;
        double last_error = 0;
        auto record = [&](int64_t step, double energy, double error) {
          objective_curve.push_back(static_cast<float>(energy));
          error_curve.push_back(static_cast<float>(error));
          steps_recorded.push_back(step);
        };
        size_t current = 0;  // the level p belongs to (the steps may run out before the finest)
        for (size_t level = 0; level < sizes.size() && !reached; ++level) {
          current = level;
          if (level > 0) {
            const at::Tensor previous = p.view({1, spec.channels, sizes[level - 1].first, sizes[level - 1].second});
            p = at::upsample_bilinear2d(previous, {sizes[level].first, sizes[level].second}, false).flatten();
          }
          // The finest level gets 40% of the steps, the coarser ones share the rest.
          const int64_t remaining = options.steps - taken;
          const int64_t budget = level + 1 == sizes.size()
                                     ? remaining
                                     : std::max<int64_t>(1, (options.steps * 6 / 10) / static_cast<int64_t>(sizes.size() - 1));
          double current_error = 0;
          auto f = [&](const at::Tensor& q, at::Tensor* gradient) {
            at::Tensor variable = q.detach().requires_grad_(true);
            double data = 0;
            const at::Tensor energy = energy_of(full(variable, level), &data);
            *gradient = torch::autograd::grad({energy}, {variable})[0].detach();
            current_error = std::sqrt(std::max(0.0, data));
            return energy.item<double>();
          };
          if (taken == 0) {
            at::Tensor unused;
            const double e0 = f(p, &unused);
            record(0, e0, current_error);  // the start
            if (options.target_error > 0 && current_error <= options.target_error) {
              reached = true;
              break;
            }
          }
          const int64_t offset = taken;
          taken += MinimizeLbfgs(p, std::min(budget, remaining), f, [&](int64_t k, double value) {
            const int64_t step = offset + k;
            last_error = current_error;
            if (step % options.record_every == 0) record(step, value, current_error);
            if (progress) progress(g, groups, step, options.steps);
            if (options.target_error > 0 && current_error <= options.target_error) {
              reached = true;
              return true;
            }
            return false;
          });
          if (taken >= options.steps) break;
        }
        at::NoGradGuard no_grad;
        const at::Tensor u_final = full(p, current).detach();
        double data = 0;
        const double final_energy = energy_of(u_final, &data).item<double>();
        if (!std::isfinite(final_energy)) throw ModelError("the inversion diverged");
        last_error = std::sqrt(std::max(0.0, data));
        if (steps_recorded.empty() || steps_recorded.back() != taken) record(taken, final_energy, last_error);
        const at::Tensor raw = to_image(u_final)[0].to(at::kCPU);
        LayerInversion& out = result.layers[elements[begin + i].index];
        out.layer = elements[begin + i].name;
        out.lambda_tv = lambda;
        out.learning_rate = 0;
        out.curvature = 0;
        out.raw = raw;
        out.image = raw.clamp(0, 1);
        out.feature_error = last_error;
        const double mse = (out.image - result.original).pow(2).mean().item<double>();
        out.pixel_rmse = std::sqrt(mse);
        out.psnr = 10.0 * std::log10(1.0 / std::max(mse, 1e-12));
        out.iterations = taken;
        out.seconds = std::chrono::duration<double>(Clock::now() - element_started).count();
        out.objective_curve = objective_curve;
        out.error_curve = error_curve;
        out.curve_steps = steps_recorded;
      }
      continue;
    }

    // Random start of norm σ, seeded per element (so batching does not change it), made on the CPU.
    std::vector<at::Tensor> starts;
    for (int64_t i = 0; i < n; ++i) {
      at::Generator generator = at::detail::createCPUGenerator(options.seed * 1000003ULL + elements[begin + i].index + 1);
      at::Tensor start = at::randn({spec.channels, spec.height, spec.width}, generator, at::TensorOptions().dtype(at::kFloat));
      starts.push_back(start / start.norm() * sigma);
    }
    at::Tensor u = at::stack(starts).to(model.device());
    at::Tensor velocity = at::zeros_like(u);

    // E per element, its data term, for the current u.
    // Φ(x) per element: the features of its own layer.
    auto features_of = [&](const at::Tensor& x) {
      const ProbeOutput out = run_view(view, model.GradientLayout(model.Preprocess(to_image(x))));
      std::vector<at::Tensor> features;
      for (int64_t i = 0; i < n; ++i) features.push_back(out.taps[tap_of[i]][i]);
      return features;
    };
    // The priors' part of σ²·E per element.
    auto regularizers_of = [&](const at::Tensor& x) {
      return (options.lambda_alpha / 2.0) * AlphaNorm(x, options.alpha) +
             lambda_tv / 2.0 * TotalVariation(x, options.beta);
    };
    auto evaluate = [&](const at::Tensor& x, at::Tensor* data_term) {
      const std::vector<at::Tensor> features = features_of(x);
      std::vector<at::Tensor> distances;
      for (int64_t i = 0; i < n; ++i) distances.push_back((features[i] - targets[i]).pow(2).sum());
      *data_term = at::stack(distances) / target_norm2;
      return *data_term + regularizers_of(x) / sigma2;
    };

    // The learning rate: given, or 2/L with L the largest eigenvalue of the Hessian of σ²·E at the start,
    // per element, by power iteration on Hessian-vector products (momentum 0.9 is stable below 3.8/L).
    at::Tensor rates = at::full({n, 1, 1, 1}, options.learning_rate, float_options);
    std::vector<double> curvatures(n, 0.0);
    std::string curvature_method;
    stepping = false;  // the curvature estimate: float32
    if (options.auto_learning_rate) {
      at::Tensor x = u.detach().requires_grad_(true);
      at::Tensor gradient;  // ∇(σ²E) at x, differentiable again
      curvature_method = options.finite_difference_curvature ? "finite differences" : "double backward";
      // H v for unit vectors v (per element): exactly by double backward, or, where an op of the network
      // has none (hardsigmoid), as the data term's Gauss-Newton product 2σ²·Jᵀ(J v)/||Φ0||² plus the
      // priors' exact product. J v comes from central differences of the features, Φ(x ± h v), which
      // are continuous (gradients jump at every ReLU kink, so differencing them would not do); Jᵀ(·) is
      // one backward pass. For piecewise-linear networks Gauss-Newton is the Hessian itself.
      auto hessian_times = [&](const at::Tensor& v) {
        if (curvature_method == "double backward") {
          try {
            if (!gradient.defined()) {
              at::Tensor unused;
              gradient = torch::autograd::grad({evaluate(x, &unused).sum() * sigma2}, {x}, {}, /*retain_graph=*/true,
                                               /*create_graph=*/true)[0];
            }
            return torch::autograd::grad({(gradient * v).sum()}, {x}, {}, /*retain_graph=*/true)[0];
          } catch (const std::exception& e) {  // c10::Error, or a JIT executor's wrapper of it
            if (std::string(e.what()).find("not implemented") == std::string::npos) throw;
            curvature_method = "finite differences";
            gradient = at::Tensor();
          }
        }
        const double h = kFiniteDifferenceStep * sigma;
        std::vector<at::Tensor> plus, minus;
        {
          at::NoGradGuard no_grad;
          plus = features_of(x.detach() + h * v);
          minus = features_of(x.detach() - h * v);
        }
        const at::Tensor leaf = x.detach().requires_grad_(true);
        const std::vector<at::Tensor> features = features_of(leaf);
        at::Tensor inner = at::zeros({}, leaf.options());
        for (int64_t i = 0; i < n; ++i) {
          const at::Tensor jv = (plus[i] - minus[i]) / (2.0 * h);
          inner = inner + (features[i] * jv).sum() * (2.0 * sigma2 / target_norm2[i]);
        }
        const at::Tensor data = torch::autograd::grad({inner}, {leaf})[0];
        const at::Tensor prior_leaf = x.detach().requires_grad_(true);
        const at::Tensor prior_gradient = torch::autograd::grad({regularizers_of(prior_leaf).sum()}, {prior_leaf}, {},
                                                                /*retain_graph=*/true, /*create_graph=*/true)[0];
        return data + torch::autograd::grad({(prior_gradient * v).sum()}, {prior_leaf})[0];
      };
      std::vector<at::Tensor> probes;  // per element, like the starts, so batching changes nothing
      for (int64_t i = 0; i < n; ++i) {
        at::Generator generator =
            at::detail::createCPUGenerator(options.seed * 1000003ULL + elements[begin + i].index + 500009ULL);
        probes.push_back(at::randn({spec.channels, spec.height, spec.width}, generator, at::TensorOptions().dtype(at::kFloat)));
      }
      at::Tensor v = at::stack(probes).to(u.device());
      at::Tensor eigen;
      for (int64_t k = 0; k < kPowerIterations; ++k) {
        v = v / v.flatten(1).norm(2, 1).clamp_min(1e-30).view({n, 1, 1, 1});
        const at::Tensor hv = hessian_times(v);
        eigen = hv.flatten(1).norm(2, 1);
        v = hv.detach();
      }
      const at::Tensor host = eigen.to(at::kCPU, at::kDouble);
      for (int64_t i = 0; i < n; ++i) {
        curvatures[i] = host[i].item<double>();
        rates[i] = curvatures[i] > 0 ? 2.0 / curvatures[i] : options.learning_rate;
      }
    }
    const at::Tensor host_rates = rates.flatten().to(at::kCPU, at::kDouble);
    stepping = true;

    std::vector<int64_t> iterations(n, options.steps);
    std::vector<bool> done(n, false);
    std::vector<std::vector<float>> objective_curves(n), error_curves(n);
    std::vector<int64_t> curve_steps;
    double previous_rate = -1;
    for (int64_t step = 1; step <= options.steps; ++step) {
      const double rate = ScheduledRate(1.0, step, options.steps);
      if (rate != previous_rate) {
        velocity.zero_();  // the paper resets momentum when the rate changes
        previous_rate = rate;
      }
      u.set_requires_grad(true);
      at::Tensor data_term;
      const at::Tensor energy = evaluate(u, &data_term);
      const at::Tensor gradient = torch::autograd::grad({energy.sum()}, {u})[0];
      u = u.detach();
      const at::Tensor errors = data_term.detach().sqrt().to(at::kCPU);
      if (!at::isfinite(energy.detach()).all().item<bool>()) {
        throw ModelError("the inversion diverged at step " + std::to_string(step) + "; give a smaller --lr");
      }
      if (step % options.record_every == 0 || step == 1 || step == options.steps) {
        const at::Tensor host_energy = energy.detach().to(at::kCPU);
        for (int64_t i = 0; i < n; ++i) {
          objective_curves[i].push_back(host_energy[i].item<float>());
          error_curves[i].push_back(errors[i].item<float>());
        }
        curve_steps.push_back(step);
      }
      bool all_done = options.target_error > 0;
      at::Tensor active = at::ones({n, 1, 1, 1}, float_options);
      for (int64_t i = 0; i < n; ++i) {
        if (!done[i] && options.target_error > 0 && errors[i].item<double>() <= options.target_error) {
          done[i] = true;
          iterations[i] = step - 1;  // the image before this step already met the target
        }
        if (done[i]) active[i] = 0.0;
        all_done = all_done && done[i];
      }
      if (all_done) {
        if (curve_steps.empty() || curve_steps.back() != step) {
          const at::Tensor host_energy = energy.detach().to(at::kCPU);
          for (int64_t i = 0; i < n; ++i) {
            objective_curves[i].push_back(host_energy[i].item<float>());
            error_curves[i].push_back(errors[i].item<float>());
          }
          curve_steps.push_back(step);
        }
        break;
      }
      {
        at::NoGradGuard no_grad;
        velocity.mul_(options.momentum).sub_(gradient * rates * (rate * sigma2)).mul_(active);
        u.add_(velocity);
      }
      if (progress) progress(g, groups, step, options.steps);
    }

    // Final images and their feature errors.
    at::NoGradGuard no_grad;
    at::Tensor data_term;
    evaluate(u, &data_term);
    const at::Tensor final_errors = data_term.sqrt().to(at::kCPU);
    const at::Tensor raw = to_image(u).to(at::kCPU);
    const double group_seconds = std::chrono::duration<double>(Clock::now() - group_started).count();
    for (int64_t i = 0; i < n; ++i) {
      LayerInversion& record = result.layers[elements[begin + i].index];
      record.layer = elements[begin + i].name;
      record.lambda_tv = elements[begin + i].lambda_tv;
      record.learning_rate = host_rates[i].item<double>();
      record.curvature = curvatures[i];
      record.curvature_method = curvature_method;
      record.raw = raw[i];
      record.image = raw[i].clamp(0, 1);
      record.feature_error = final_errors[i].item<double>();
      const double mse = (record.image - result.original).pow(2).mean().item<double>();
      record.pixel_rmse = std::sqrt(mse);
      record.psnr = 10.0 * std::log10(1.0 / std::max(mse, 1e-12));
      record.iterations = iterations[i];
      record.seconds = group_seconds / static_cast<double>(n);
      record.objective_curve = objective_curves[i];
      record.error_curve = error_curves[i];
      record.curve_steps = curve_steps;
    }
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return result;
}

}  // namespace cnnviz
