#include "cnnviz/options_json.h"

namespace cnnviz::app {
using json = nlohmann::json;

namespace {

template <typename T>
json Optional(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

}  // namespace

json ToJson(const ModelOptions& options) {
  const auto& [path, input_size] = options;
  return {{"path", path}, {"input_size", Optional(input_size)}};
}

json ToJson(const ImageParamOptions& options) {
  const auto& [kind, decorrelate, height, width, init_std] = options;
  return {{"kind", kind}, {"decorrelate", decorrelate}, {"height", height}, {"width", width}, {"init_std", init_std}};
}

json ToJson(const RenderOptions& options) {
  const auto& [steps, learning_rate, record_every, decay, blur_every, blur_sigma, clip_percentile] = options;
  return {{"steps", steps},           {"learning_rate", learning_rate}, {"record_every", record_every},
          {"decay", decay},           {"blur_every", blur_every},       {"blur_sigma", blur_sigma},
          {"clip_percentile", clip_percentile}};
}

json ToJson(const ActMaxOptions& options) {
  const auto& [layer, units, objective, direction_file, expression, objectives, diversity, diversity_weight, batch,
               param, transforms, render, part, workers, truncate, select_channels, relu_redirect_steps, seed,
               precision] = options;
  json texts = json::array();
  for (const Objective& given : objectives) texts.push_back(given.ToString());
  return {{"layer", layer},
          {"units", units},
          {"objective", objective},
          {"direction_file", direction_file},
          {"expression", expression},
          {"objectives", texts},
          {"diversity", diversity},
          {"diversity_weight", diversity_weight},
          {"batch", batch},
          {"param", ToJson(param)},
          {"transforms", transforms},
          {"render", ToJson(render)},
          {"part", part},
          {"workers", workers},
          {"truncate", truncate},
          {"select_channels", select_channels},
          {"relu_redirect_steps", relu_redirect_steps},
          {"seed", seed},
          {"precision", ToString(precision)}};
}

json ToJson(const DeconvOptions& options) {
  const auto& [layers, units, top, rule, seed_from, position, batch, max_images, decode_threads, scan_precision] = options;
  return {{"layers", layers},         {"units", units}, {"top", top},
          {"rule", ToString(rule)},   {"seed_from", seed_from}, {"position", position},
          {"batch", batch},           {"max_images", max_images}, {"decode_threads", decode_threads},
          {"scan_precision", ToString(scan_precision)}};
}

json ToJson(const DissectionOptions& options) {
  const auto& [layers, quantile, iou_threshold, batch, top_images, cache_mb, decode_threads, activated_area,
               union_maps, thresholds, bases, precision] = options;
  json given = json::array();  // per layer, the number of units whose thresholds were given
  for (const at::Tensor& layer_thresholds : thresholds) given.push_back(layer_thresholds.numel());
  json changed = json::array();  // per layer, whether its basis was changed (compare --rotations)
  for (const at::Tensor& basis : bases) changed.push_back(basis.defined());
  return {{"layers", layers},
          {"quantile", quantile},
          {"iou_threshold", iou_threshold},
          {"batch", batch},
          {"top_images", top_images},
          {"cache_mb", cache_mb},
          {"decode_threads", decode_threads},
          {"activated_area", activated_area == ActivatedArea::kCovered ? "covered" : "present"},
          {"union_maps", union_maps},
          {"thresholds_given", given},
          {"bases_changed", changed},
          {"precision", ToString(precision)}};
}

json ToJson(const BrodenOptions& options) {
  const auto& [split, categories, max_images] = options;
  return {{"split", split}, {"categories", categories}, {"max_images", max_images}};
}

json ToJson(const InversionOptions& options) {
  const auto& [layers, paper_mode, prior_scale, levels, steps, learning_rate, auto_learning_rate,
               finite_difference_curvature, momentum, alpha, lambda_alpha, beta, lambda_tv, pixel_norm, batch,
               target_error, record_every, truncate, seed, precision] = options;
  return {{"layers", layers},
          {"paper_mode", paper_mode},
          {"prior_scale", prior_scale},
          {"levels", levels},
          {"steps", steps},
          {"learning_rate", learning_rate},
          {"auto_learning_rate", auto_learning_rate},
          {"finite_difference_curvature", finite_difference_curvature},
          {"momentum", momentum},
          {"alpha", alpha},
          {"lambda_alpha", lambda_alpha},
          {"beta", beta},
          {"lambda_tv", Optional(lambda_tv)},  // null: by depth (1, 10, 100), see each layer's lambda_tv
          {"pixel_norm", pixel_norm},
          {"batch", batch},
          {"target_error", target_error},
          {"record_every", record_every},
          {"truncate", truncate},
          {"seed", seed},
          {"precision", ToString(precision)}};
}

json ToJson(const ActMaxCommandOptions& options) {
  const auto& [model, method, units_text, units_given, out, save_arrays, reference_dataset] = options;
  return {{"model", ToJson(model)},        {"method", ToJson(method)}, {"units", units_given ? units_text : "all"},
          {"out", out},                    {"save_arrays", save_arrays},
          {"reference_dataset", reference_dataset}};
}

json ToJson(const AttackOptions& options) {
  const auto& [attack, norm, epsilon, steps, step_size, random_start, target, seed] = options;
  return {{"attack", attack},
          {"norm", norm == AttackNorm::kL2 ? "l2" : "linf"},
          {"epsilon", epsilon},
          {"steps", steps},
          {"step_size", step_size},
          {"random_start", random_start},
          {"target", target >= 0 ? json(target) : json(nullptr)},
          {"seed", seed}};
}

json ToJson(const AdversarialCommandOptions& options) {
  const auto& [model, attack, norm, epsilon_text, step_size_text, no_random_start, image, images, adversarial_image,
               npy_values, layers_text, inspect_text, changed_units, dissection, rule, inversion_layers_text,
               inversion_steps, batch, max_images, workers, out] = options;
  (void)norm;  // in "attack"
  (void)no_random_start;
  return {{"model", ToJson(model)},
          {"attack", ToJson(attack)},
          {"epsilon_text", epsilon_text},
          {"step_size_text", step_size_text},
          {"image", image},
          {"images", images},
          {"adversarial_image", adversarial_image},
          {"npy_values", npy_values},
          {"layers", layers_text},
          {"inspect", inspect_text},
          {"changed_units", changed_units},
          {"dissection", dissection},
          {"rule", rule},
          {"inversion_layers", inversion_layers_text},
          {"inversion_steps", inversion_steps},
          {"batch", batch},
          {"max_images", max_images},
          {"workers", workers},
          {"out", out}};
}

json ToJson(const CompareCommandOptions& options) {
  const auto& [models, names_text, order, input_size, method, dataset_options, dataset, categories_text, layers_text,
               rotations_text, units_text, units_given, strip_units, actmax_steps, restart, out] = options;
  (void)categories_text;  // in "broden"
  return {{"models", models},
          {"names", names_text},
          {"order", order},
          {"input_size", Optional(input_size)},
          {"method", ToJson(method)},
          {"broden", ToJson(dataset_options)},
          {"dataset", dataset},
          {"layers", layers_text},
          {"rotations", rotations_text},
          {"units", units_given ? json(units_text) : json(nullptr)},
          {"strip_units", strip_units},
          {"actmax_steps", actmax_steps},
          {"restart", restart},
          {"out", out}};
}

json ToJson(const DeconvCommandOptions& options) {
  const auto& [model, method, layers_text, units_text, units_given, rule, dataset, image, npy_values, position_text,
               out, save_arrays] = options;
  return {{"model", ToJson(model)}, {"method", ToJson(method)}, {"layers", layers_text},
          {"units", units_given ? units_text : "all"}, {"rule", rule}, {"dataset", dataset},
          {"image", image},         {"npy_values", npy_values},  {"position", position_text},
          {"out", out},             {"save_arrays", save_arrays}};
}

json ToJson(const AtlasCommandOptions& options) {
  const auto& [model, dataset, layers_text, images, steps, top, samples, grid, min_count, diversity, max_units,
               inversions, inversion_steps, classes, batch, decode_threads, precision, restart, out] = options;
  return {{"model", ToJson(model)},
          {"dataset", dataset},
          {"layers", layers_text},
          {"images", images},
          {"steps", steps},
          {"top", top},
          {"samples", samples},
          {"grid", grid},
          {"min_count", min_count},
          {"diversity", diversity},
          {"max_units", max_units},
          {"inversions", inversions},
          {"inversion_steps", inversion_steps},
          {"classes", classes},
          {"batch", batch},
          {"decode_threads", decode_threads},
          {"precision", ToString(precision)},
          {"restart", restart},
          {"out", out}};
}

json ToJson(const DissectCommandOptions& options) {
  const auto& [model, method, dataset_options, dataset, layers_text, categories_text, thresholds_text,
               activated_area, out, save_arrays] = options;
  return {{"model", ToJson(model)},
          {"method", ToJson(method)},
          {"dataset_options", ToJson(dataset_options)},
          {"dataset", dataset},
          {"layers", layers_text},
          {"categories", categories_text},
          {"thresholds", thresholds_text},
          {"activated_area", activated_area},
          {"out", out},
          {"save_arrays", save_arrays}};
}

json ToJson(const InvertCommandOptions& options) {
  const auto& [model, method, image, npy_values, layers_text, decoder, lr_text, out, save_arrays] = options;
  return {{"model", ToJson(model)}, {"method", ToJson(method)}, {"image", image},
          {"npy_values", npy_values}, {"layers", layers_text},    {"decoder", decoder},
          {"lr", lr_text},            {"out", out},               {"save_arrays", save_arrays}};
}

}  // namespace cnnviz::app
