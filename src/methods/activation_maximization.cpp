#include "cnnviz/methods/activation_maximization.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/core/workers.h"

namespace cnnviz {
namespace {

struct Element {
  Objective objective;
  UnitImage record;
  uint64_t seed = 0;
};

std::vector<Element> BuildElements(const ActMaxOptions& options, const Probe& probe) {
  std::vector<Element> elements;
  auto add_copies = [&](const Objective& objective, const std::string& label, const std::string& layer,
                        int64_t unit) {
    for (int64_t copy = 0; copy < options.diversity; ++copy) {
      Element element;
      element.objective = objective;
      element.record.label = copy == 0 ? label : label + "#" + std::to_string(copy);
      element.record.objective = objective.ToString();
      element.record.layer = layer;
      element.record.unit = unit;
      element.record.copy = copy;
      element.seed = static_cast<uint64_t>(unit + 1) * 1024ULL + static_cast<uint64_t>(copy);
      elements.push_back(element);
    }
  };
  if (!options.objectives.empty()) {
    for (size_t i = 0; i < options.objectives.size(); ++i) {
      CheckObjective(options.objectives[i], probe);
      add_copies(options.objectives[i], "objective " + std::to_string(i), options.layer, static_cast<int64_t>(i));
    }
    return elements;
  }
  if (!options.expression.empty()) {
    Objective objective = ParseObjective(options.expression);
    CheckObjective(objective, probe);
    add_copies(objective, objective.ToString(), "", -1);
    return elements;
  }
  std::vector<int64_t> units = options.units;
  if (options.objective == "class") {
    ViewSpec spec{{}, true};
    for (int64_t unit : units) {
      Objective objective;
      ObjectiveTerm term;
      term.kind = "class";
      term.unit = unit;
      objective.terms.push_back(term);
      add_copies(objective, objective.ToString(), "", unit);
    }
    return elements;
  }
  const LayerInfo& layer = probe.FindUnits(options.layer);
  if (units.empty()) {
    for (int64_t unit = 0; unit < layer.units; ++unit) units.push_back(unit);
  }
  at::Tensor direction;
  if (options.objective == "direction") {
    direction = ParseObjective("dir(" + options.layer + "," + options.direction_file + ")").terms[0].direction;
  }
  for (int64_t unit : units) {
    Objective objective;
    ObjectiveTerm term;
    term.layer = options.layer;
    term.unit = unit;
    if (options.objective == "neuron") term.kind = "neuron";
    if (options.objective == "direction") {
      term.kind = "direction";
      term.path = options.direction_file;
      term.direction = direction;
      term.unit = 0;
    }
    objective.terms.push_back(term);
    CheckObjective(objective, probe);
    add_copies(objective, options.objective == "direction" ? objective.ToString() : options.layer + ":" + std::to_string(unit),
               options.layer, unit);
    if (options.objective == "direction") break;  // one direction, one image (times diversity)
  }
  return elements;
}

int64_t CheckClasses(const std::vector<Element>& elements, const Probe& probe, const at::Tensor& logits) {
  const int64_t classes = logits.size(1);
  for (const auto& element : elements) {
    for (const auto& term : element.objective.terms) {
      if (FindObjectiveKind(term.kind).reads == TermReads::kOutput && (term.unit < 0 || term.unit >= classes)) {
        throw UsageError("class " + std::to_string(term.unit) + " is out of range (the model has " +
                         std::to_string(classes) + " outputs: 0-" + std::to_string(classes - 1) + ")");
      }
    }
  }
  return classes;
}

// The one channel `objective` reads of `layer`, when all it reads is that channel or a neuron of it
// (image regularizers aside).
std::optional<int64_t> OnlyChannel(const Objective& objective, const std::string& layer) {
  std::optional<int64_t> channel;
  for (const ObjectiveTerm& term : objective.terms) {
    switch (FindObjectiveKind(term.kind).reads) {
      case TermReads::kChannel:
        if (term.layer != layer || (channel && *channel != term.unit)) return std::nullopt;
        channel = term.unit;
        break;
      case TermReads::kImage:
        break;
      default:
        return std::nullopt;
    }
  }
  return channel;
}

}  // namespace

void ActMaxOptions::Check() const {
  if (relu_redirect_steps < 0) throw UsageError("--relu-redirect-steps must be >= 0");
  if (expression.empty() && objectives.empty()) {
    if (objective != "channel" && objective != "neuron" && objective != "class" && objective != "direction") {
      throw UsageError("--objective must be channel, neuron, class or direction, not '" + objective + "'");
    }
    if (objective != "class" && layer.empty()) throw UsageError("--layer is required (or give --expr)");
    if (objective == "class" && units.empty()) throw UsageError("--objective class needs --unit/--units (class indices)");
    if (objective == "direction" && direction_file.empty()) throw UsageError("--objective direction needs --direction FILE");
    for (int64_t unit : units) {
      if (unit < 0) throw UsageError("units must be non-negative");
    }
  }
  if (diversity < 1) throw UsageError("--diversity must be at least 1");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (part < -1) throw UsageError("--part must be -1 (automatic), 0 (the whole batch) or positive");
  if (workers < 0) throw UsageError("--workers must be 0 (automatic) or positive");
  if (diversity > 1 && layer.empty() && expression.empty() && objectives.empty()) throw UsageError("--diversity needs --layer");
  param.Check();
  render.Check();
  ParseTransforms(transforms);
}

namespace {

// What a run has settled before optimizing: the batch elements, the view, and the shortcuts it may take.
struct ActMaxPlan {
  std::vector<Element> elements;
  std::vector<std::string> layers;  // what the view taps
  std::string diversity_layer;      // "" without diversity
  size_t diversity_index = 0;       // its index in `layers`
  ViewSpec view, selecting;         // the view; the same computing each image's own channel alone
  bool needs_output = false;
  bool resize = false;              // images resized to the model's input size first
  bool select = false;              // own channels alone (ViewSpec::select_channels)
  std::vector<int64_t> own_channel; // per element, with `select`
};

// Stage 1: the elements (units x diversity copies, or the given objectives), the view over the layers
// they read, whether the network takes the image size, and whether each image's own channel can be
// computed alone.
ActMaxPlan PlanRun(const Probe& probe, const ActMaxOptions& options, ActMaxResult& result) {
  const Model& model = probe.model();
  std::vector<Element> elements = BuildElements(options, probe);
  std::vector<Objective> all_objectives;
  for (const auto& element : elements) all_objectives.push_back(element.objective);
  bool needs_output = false;
  std::vector<std::string> layers = LayersOf(all_objectives, &needs_output);
  // Diversity reads the visualized layer (or the expression's first layer).
  std::string diversity_layer;
  if (options.diversity > 1) {
    diversity_layer = !options.layer.empty() ? options.layer : (layers.empty() ? "" : layers.front());
    if (diversity_layer.empty()) throw UsageError("--diversity needs an objective that reads a layer");
    if (std::find(layers.begin(), layers.end(), diversity_layer) == layers.end()) layers.push_back(diversity_layer);
  }
  const size_t diversity_index = std::find(layers.begin(), layers.end(), diversity_layer) - layers.begin();
  const ViewSpec view{layers, needs_output || !options.truncate};

  // Can the network take the image at its own size? If not (fixed-size classifiers), resize to the
  // model's input size before every forward pass.
  const InputSpec& spec = model.input_spec();
  {
    at::NoGradGuard no_grad;
    const at::Tensor probeimage = at::full({1, spec.channels, options.param.height, options.param.width}, 0.5,
                                            at::TensorOptions().device(model.device()));
    try {
      ProbeOutput out = probe.Run(view, model.Preprocess(probeimage));
      if (needs_output) CheckClasses(elements, probe, out.output);
    } catch (const c10::Error&) {
      result.resized_to_model = true;
      LogInfo("the model cannot take " + std::to_string(options.param.height) + "x" + std::to_string(options.param.width) +
              " images; resizing them to its input size " + std::to_string(spec.height) + "x" +
              std::to_string(spec.width));
      ProbeOutput out = probe.Run(view, model.Preprocess(at::upsample_bilinear2d(
                                             probeimage, {spec.height, spec.width}, false)));
      if (needs_output) CheckClasses(elements, probe, out.output);
    }
  }
  const bool resize = result.resized_to_model;
  for (const auto& layer : layers) {
    if (probe.Find(layer).shape.size() != 4 && !diversity_layer.empty() && layer == diversity_layer) {
      throw UsageError("--diversity needs a layer with spatial extent; '" + layer + "' has none");
    }
  }

  // Each image's own channel alone (ViewSpec::select_channels): on a CPU, where every objective reads
  // one channel of the view's only layer and the layer allows it.
  std::vector<int64_t> own_channel;
  ViewSpec selecting = view;
  selecting.select_channels = true;
  if (options.select_channels && model.device().is_cpu() && layers.size() == 1 && !view.output &&
      diversity_layer.empty()) {
    for (const auto& element : elements) {
      const std::optional<int64_t> channel = OnlyChannel(element.objective, layers.front());
      if (!channel) break;
      own_channel.push_back(*channel);
    }
    if (own_channel.size() != elements.size() || !probe.CanSelectChannels(selecting)) own_channel.clear();
  }
  const bool select = !own_channel.empty();
  result.selected_channels = select;
  ActMaxPlan plan;
  plan.elements = std::move(elements);
  plan.layers = layers;
  plan.diversity_layer = diversity_layer;
  plan.diversity_index = diversity_index;
  plan.view = view;
  plan.selecting = selecting;
  plan.needs_output = needs_output;
  plan.resize = resize;
  plan.select = select;
  plan.own_channel = std::move(own_channel);
  return plan;
}

// Stage 2: the elements optimized in batches (parts of whole diversity groups on worker threads),
// their images and values recorded in `result`.
void RenderBatches(const Probe& probe, const ActMaxOptions& options, const ActMaxPlan& plan,
                   const ActivationMaximization::Progress& progress, ActMaxResult& result) {
  const Model& model = probe.model();
  const InputSpec& spec = model.input_spec();
  const std::vector<Element>& elements = plan.elements;
  const std::vector<std::string>& layers = plan.layers;
  const std::string& diversity_layer = plan.diversity_layer;
  const size_t diversity_index = plan.diversity_index;
  const ViewSpec& view = plan.view;
  const ViewSpec& selecting = plan.selecting;
  const bool resize = plan.resize, select = plan.select;
  const std::vector<int64_t>& own_channel = plan.own_channel;

  const Transform transform = ParseTransforms(options.transforms);
  const int64_t per_batch = std::max<int64_t>(1, options.batch / options.diversity) * options.diversity;
  const int64_t total = static_cast<int64_t>(elements.size());
  const int64_t batches = (total + per_batch - 1) / per_batch;
  // Elements [begin, end) optimized together: their own parameterization, and the transform sequence
  // every batch gets (the rng starts from the seed), so results do not depend on the batching.
  std::mutex penalty_mutex;
  std::map<int64_t, at::Tensor> last_penalty;  // a part's (by its first element) diversity penalty, last evaluated
  auto render_part = [&](int64_t begin, int64_t end, const StepCallback& on_step) {
    std::vector<Objective> objectives, whole_layer;  // the latter read every channel (redirected steps)
    std::vector<uint64_t> seeds;
    std::vector<int64_t> channels;
    for (int64_t i = begin; i < end; ++i) {
      objectives.push_back(elements[i].objective);
      whole_layer.push_back(elements[i].objective);
      seeds.push_back(elements[i].seed);
      if (select) {  // the selected tap holds the element's channel as channel 0
        channels.push_back(own_channel[i]);
        for (auto& term : objectives.back().terms) {
          if (FindObjectiveKind(term.kind).reads == TermReads::kChannel) term.unit = 0;
        }
      }
    }
    const at::Tensor selection = select ? at::tensor(channels, at::kLong) : at::Tensor();
    auto param = ImageParam::Create(options.param, options.seed, seeds, model.device());
    Rng rng(options.seed);
    int64_t gradient_steps = 0;  // calls that take gradients: optimization steps
    BatchObjective objective = [&](const at::Tensor& image, const at::Tensor& transformed) {
      at::Tensor x = transformed;
      if (resize) x = at::upsample_bilinear2d(x, {spec.height, spec.width}, false);
      const bool redirect = at::GradMode::is_enabled() && ++gradient_steps <= options.relu_redirect_steps;
      ViewSpec redirected = view;
      redirected.rule = BackwardRule::kRedirected;
      const bool selected = select && !redirect;
      // Reduced precision for the optimization steps' network alone; evaluations (no gradient) in float32.
      const bool reduced = options.precision != Precision::kFp32 && at::GradMode::is_enabled();
      const at::Tensor input = model.GradientLayout(model.Preprocess(x));
      ProbeOutput out;
      {
        const AutocastGuard autocast(reduced ? options.precision : Precision::kFp32, model.device());
        out = selected ? probe.Run(selecting, input, selection) : probe.Run(redirect ? redirected : view, input);
      }
      if (reduced) {
        for (at::Tensor& tap : out.taps) tap = tap.to(at::kFloat);
        if (out.output.defined()) out.output = out.output.to(at::kFloat);
      }
      at::Tensor values =
          EvaluateObjectives(selected || !select ? objectives : whole_layer, image, layers, out.taps, out.output);
      if (diversity_layer.empty()) return values;
      // The penalty is weighted by each copy's own objective (not differentiated), so the weight means
      // the same for units of any scale and a silent copy takes off before it is pushed apart; and it is
      // off for a copy below half its group's best, which then climbs back instead of trading the unit
      // away for an unlike (or silent) Gram matrix and dying there.
      const at::Tensor penalty = DiversityPenalty(out.taps[diversity_index], options.diversity);
      const at::Tensor own = values.detach();
      const at::Tensor best = std::get<0>(own.view({-1, options.diversity}).max(1, true));
      const at::Tensor scale =
          (own.clamp_min(0) * (own.view({-1, options.diversity}) >= 0.5 * best).reshape({-1})).to(own.scalar_type());
      if (!at::GradMode::is_enabled()) {  // initial and final evaluation: the objective alone is reported
        std::lock_guard<std::mutex> lock(penalty_mutex);
        last_penalty[begin] = penalty.detach().to(at::kCPU, at::kFloat);
        return values;
      }
      return values - options.diversity_weight * scale * penalty;
    };
    return Render(*param, objective, transform, rng, options.render, on_step);
  };
  // A batch is optimized as parts of whole diversity groups, each a batch of its own. On a CPU parts
  // are small (their tensors stay in cache) and run concurrently on worker threads with one intra-op
  // thread each, so whole steps run in parallel, not just the network's ops.
  const bool cuda = model.device().is_cuda();
  const int64_t part_size = options.part > 0 ? options.part : (options.part == 0 || cuda ? per_batch : 4);
  const int64_t part_groups = std::max<int64_t>(1, (part_size + options.diversity - 1) / options.diversity);
  const int64_t worker_count = options.workers > 0 ? options.workers : (cuda ? 1 : std::max(1, at::get_num_threads()));
  std::unique_ptr<Workers> workers;
  if (worker_count > 1 && per_batch / options.diversity > part_groups) workers = std::make_unique<Workers>(worker_count);
  result.workers = workers ? worker_count : 1;
  std::mutex progress_mutex;

  std::vector<at::Tensor> images;
  double batch_step_seconds = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t begin = b * per_batch, end = std::min(total, begin + per_batch);
    const int64_t groups = (end - begin) / options.diversity;
    const int64_t parts = (groups + part_groups - 1) / part_groups;
    std::vector<int64_t> bounds;
    for (int64_t p = 0; p < parts; ++p) bounds.push_back(begin + p * part_groups * options.diversity);
    bounds.push_back(end);
    std::vector<RenderResult> rendered(parts);
    std::vector<int64_t> part_steps(parts, 0);  // steps each part has taken (progress)
    std::atomic<int64_t> parts_done{0};
    auto run_part = [&](int64_t p) {
      StepCallback on_step;
      if (progress) {
        on_step = [&, p](int64_t step, int64_t steps) {
          std::lock_guard<std::mutex> lock(progress_mutex);
          part_steps[p] = step;
          int64_t done = begin, steps_done = 0;
          for (int64_t q = 0; q < parts; ++q) {
            steps_done += part_steps[q] * (bounds[q + 1] - bounds[q]);
            if (part_steps[q] == steps) done += bounds[q + 1] - bounds[q];
          }
          const double fraction = (static_cast<double>(begin) * steps + static_cast<double>(steps_done)) /
                                  (static_cast<double>(total) * steps);
          progress(done, total, fraction, b, batches);
        };
      }
      rendered[p] = render_part(bounds[p], bounds[p + 1], on_step);
      ++parts_done;
    };
    if (workers && parts > 1) {
      workers->Run(parts, run_part);
    } else {
      for (int64_t p = 0; p < parts; ++p) run_part(p);
    }
    // One step of the whole batch: its parts' mean step times, summed, over the workers that ran them.
    double part_seconds = 0;
    for (const auto& part : rendered) {
      images.push_back(part.images.to(at::kCPU));
      double sum = 0;
      int64_t count = 0;
      for (size_t s = 0; s < part.step_seconds.size(); ++s) {
        if (static_cast<int64_t>(s) < ActMaxResult::kWarmupSteps && part.step_seconds.size() > ActMaxResult::kWarmupSteps) continue;
        sum += part.step_seconds[s];
        ++count;
      }
      part_seconds += sum / std::max<int64_t>(1, count);
    }
    batch_step_seconds += part_seconds / static_cast<double>(workers && parts > 1 ? std::min(worker_count, parts) : 1);
    result.curve_steps = rendered[0].curve_steps;
    for (int64_t p = 0; p < parts; ++p) {
      for (int64_t i = bounds[p]; i < bounds[p + 1]; ++i) {
        UnitImage record = elements[i].record;
        record.initial_value = rendered[p].initial_values[i - bounds[p]].item<float>();
        record.final_value = rendered[p].final_values[i - bounds[p]].item<float>();
        record.curve = rendered[p].curves[i - bounds[p]];
        if (!diversity_layer.empty()) record.diversity_term = last_penalty.at(bounds[p])[i - bounds[p]].item<float>();
        result.units.push_back(record);
      }
    }
  }
  result.images = at::cat(images);
  result.ms_per_step = 1000.0 * batch_step_seconds / static_cast<double>(batches);
}

}  // namespace

ActMaxResult ActivationMaximization::Run(const ActMaxOptions& options, const Progress& progress) const {
  options.Check();
  CheckPrecision(options.precision, probe_.model().device());
  const auto start = std::chrono::steady_clock::now();
  ActMaxResult result;
  const ActMaxPlan plan = PlanRun(probe_, options, result);
  RenderBatches(probe_, options, plan, progress, result);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace cnnviz
