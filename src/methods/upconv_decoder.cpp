#include "cnnviz/methods/upconv_decoder.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/io/atomic_file.h"

namespace cnnviz {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kFormat1 = "cnnviz-decoder-1";  // the paper's plain decoder; still loaded
constexpr const char* kFormat = "cnnviz-decoder-2";   // standardized features, residual to the mean image
// "Better than the mean image": a validation loss at least this fraction below the baseline's.
constexpr double kBetterMargin = 1e-3;

json ToJson(const DecoderInfo& info) {
  return {{"format", info.format_version == 1 ? kFormat1 : kFormat},
          {"model_path", info.model_path},
          {"model_fingerprint", info.model_fingerprint},
          {"layer", info.layer},
          {"layer_alias", info.layer_alias},
          {"feature_shape", info.feature_shape},
          {"height", info.height},
          {"width", info.width},
          {"channels", info.channels},
          {"upsamplings", info.upsamplings},
          {"dataset", info.dataset},
          {"train_images", info.train_images},
          {"val_images", info.val_images},
          {"epochs_done", info.epochs_done},
          {"batch", info.batch},
          {"learning_rate", info.learning_rate},
          {"seed", info.seed},
          {"train_loss", info.train_loss},
          {"val_loss", info.val_loss},
          {"mean_image_val_loss", info.mean_image_val_loss},
          {"beats_mean_image", info.beats_mean_image},
          {"train_seconds", info.train_seconds}};
}

DecoderInfo FromJson(const json& doc) {
  DecoderInfo info;
  info.model_path = doc.at("model_path").get<std::string>();
  info.model_fingerprint = doc.at("model_fingerprint").get<std::string>();
  info.layer = doc.at("layer").get<std::string>();
  info.layer_alias = doc.value("layer_alias", std::string());
  info.feature_shape = doc.at("feature_shape").get<std::vector<int64_t>>();
  info.height = doc.at("height").get<int64_t>();
  info.width = doc.at("width").get<int64_t>();
  info.channels = doc.at("channels").get<int64_t>();
  info.upsamplings = doc.at("upsamplings").get<int64_t>();
  info.dataset = doc.value("dataset", std::string());
  info.train_images = doc.value("train_images", int64_t{0});
  info.val_images = doc.value("val_images", int64_t{0});
  info.epochs_done = doc.value("epochs_done", int64_t{0});
  info.batch = doc.value("batch", int64_t{0});
  info.learning_rate = doc.value("learning_rate", 0.0);
  info.seed = doc.value("seed", uint64_t{0});
  info.train_loss = doc.value("train_loss", std::vector<double>());
  info.val_loss = doc.value("val_loss", std::vector<double>());
  info.mean_image_val_loss = doc.value("mean_image_val_loss", 0.0);
  info.beats_mean_image = doc.value("beats_mean_image", false);
  info.train_seconds = doc.value("train_seconds", 0.0);
  return info;
}

// Dosovitskiy's unpooling: each value to the top-left of a 2x2 block of zeros. Followed by a convolution
// it is the paper's "up-convolution" (a stride-2 transposed convolution), run by the fast convolution
// kernels instead of LibTorch's slow CPU transposed convolution (3.6x faster measured here).
torch::Tensor Unpool(const torch::Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  torch::Tensor y = torch::zeros({n, c, h, 2, w, 2}, x.options());
  y.select(5, 0).select(3, 0).copy_(x);
  return y.view({n, c, 2 * h, 2 * w});
}

// The decoder network.
struct DecoderNet : torch::nn::Module {
  explicit DecoderNet(const DecoderInfo& info)
      : height(info.height), width(info.width), first(info.channels), standardized(info.format_version >= 2) {
    if (info.feature_shape.size() == 3) {
      convs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(info.feature_shape[0], first, 3).padding(1)));
      convs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(first, first, 3).padding(1)));
    } else {
      fc = register_module("fc", torch::nn::Linear(info.feature_shape[0], first * 16));
    }
    int64_t channels = first;
    for (int64_t i = 0; i < info.upsamplings; ++i) {
      const int64_t next = std::max<int64_t>(32, channels / 2);
      upconvs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, next, 5).padding(2)));
      channels = next;
    }
    register_module("convs", convs);
    register_module("upconvs", upconvs);
    out = register_module("out", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, 3, 3).padding(1)));
    if (standardized) {
      // Set by training (SetStatistics) or loaded; identity until then.
      feature_mean = register_buffer("feature_mean", torch::zeros({info.feature_shape[0]}));
      feature_scale = register_buffer("feature_scale", torch::ones({info.feature_shape[0]}));
      mean_image = register_buffer("mean_image", torch::zeros({1, 3, info.height, info.width}));
      // An untrained decoder gives the mean image.
      torch::NoGradGuard no_grad;
      out->weight.zero_();
      out->bias.zero_();
    }
  }

  // Per-channel mean and 1/std of the training features, and the mean training image.
  void SetStatistics(const torch::Tensor& mean, const torch::Tensor& scale, const torch::Tensor& image) {
    torch::NoGradGuard no_grad;
    feature_mean.copy_(mean);
    feature_scale.copy_(scale);
    mean_image.copy_(image);
  }

  torch::Tensor forward(torch::Tensor x) {
    if (standardized) {
      const std::vector<int64_t> shape =
          x.dim() == 4 ? std::vector<int64_t>{1, -1, 1, 1} : std::vector<int64_t>{1, -1};
      x = (x - feature_mean.view(shape)) * feature_scale.view(shape);
    }
    if (fc) x = torch::leaky_relu(fc->forward(x.flatten(1)), 0.2).view({x.size(0), first, 4, 4});
    for (const auto& conv : *convs) x = torch::leaky_relu(conv->as<torch::nn::Conv2d>()->forward(x), 0.2);
    for (const auto& conv : *upconvs) x = torch::leaky_relu(conv->as<torch::nn::Conv2d>()->forward(Unpool(x)), 0.2);
    x = out->forward(x);
    if (x.size(2) != height || x.size(3) != width) x = torch::upsample_bilinear2d(x, {height, width}, false);
    return standardized ? x + mean_image : x;
  }

  // Bytes of the tensors one image keeps for the backward pass of a training step, and about as many
  // again for their gradients: what a micro-batch costs per image.
  int64_t TrainingBytesPerImage(const DecoderInfo& info) const {
    int64_t elements = 0, channels = first, side_h = 4, side_w = 4;
    if (info.feature_shape.size() == 3) {
      side_h = info.feature_shape[1];
      side_w = info.feature_shape[2];
      elements += 2 * info.feature_shape[0] * side_h * side_w + 4 * first * side_h * side_w;
    } else {
      elements += 2 * first * 16;
    }
    for (int64_t i = 0; i < static_cast<int64_t>(upconvs->size()); ++i) {
      const int64_t next = std::max<int64_t>(32, channels / 2);
      // unpooled input (4x), convolution output and its leaky ReLU
      elements += 4 * channels * side_h * side_w + 2 * 4 * next * side_h * side_w;
      side_h *= 2;
      side_w *= 2;
      channels = next;
    }
    elements += 3 * side_h * side_w + 4 * 3 * height * width;
    return 2 * 4 * elements;
  }

  int64_t height, width, first;
  bool standardized;
  torch::Tensor feature_mean, feature_scale, mean_image;
  torch::nn::Linear fc{nullptr};
  torch::nn::ModuleList convs, upconvs;
  torch::nn::Conv2d out{nullptr};
};

void SaveArchive(const std::string& path, const DecoderInfo& info, DecoderNet& net, torch::optim::Adam* optimizer) {
  torch::serialize::OutputArchive archive;
  archive.write("cnnviz_decoder", c10::IValue(ToJson(info).dump()));
  torch::serialize::OutputArchive weights;
  net.save(weights);
  archive.write("decoder", weights);
  if (optimizer) {
    torch::serialize::OutputArchive state;
    optimizer->save(state);
    archive.write("optimizer", state);
  }
  const fs::path target(path);
  std::error_code ec;
  if (!target.parent_path().empty()) fs::create_directories(target.parent_path(), ec);
  // Serialized in memory, then written atomically: LibTorch's file writer finishes the archive in its
  // destructor, where a full disk's error cannot be caught (it aborted the process).
  std::ostringstream bytes;
  try {
    archive.save_to(bytes);
  } catch (const c10::Error& e) {
    throw InputError("cannot write decoder '" + path + "': " + FirstLine(e.what_without_backtrace()));
  }
  WriteFileAtomic(path, bytes.str());
}

}  // namespace

struct UpconvDecoder::Impl {
  std::shared_ptr<DecoderNet> net;
  c10::Device device{c10::kCPU};
  std::unique_ptr<torch::serialize::InputArchive> optimizer_state;  // from a loaded file, for resuming
};

UpconvDecoder::UpconvDecoder(const DecoderInfo& info, uint64_t seed, const c10::Device& device)
    : info_(info), impl_(std::make_unique<Impl>()) {
  torch::manual_seed(seed);
  impl_->net = std::make_shared<DecoderNet>(info_);
  impl_->net->to(device);
  impl_->device = device;
}

UpconvDecoder::~UpconvDecoder() = default;

std::unique_ptr<UpconvDecoder> UpconvDecoder::Load(const std::string& path, const c10::Device& device) {
  if (!fs::exists(path)) throw InputError("decoder file '" + path + "' does not exist (train one with `cnnviz upconv train`)");
  auto archive = std::make_unique<torch::serialize::InputArchive>();
  c10::IValue meta;
  try {
    archive->load_from(path, device);
    if (!archive->try_read("cnnviz_decoder", meta) || !meta.isString()) {
      throw InputError("'" + path + "' is not a cnnviz decoder (no decoder metadata; train one with `cnnviz upconv train`)");
    }
  } catch (const c10::Error& e) {
    throw InputError("'" + path + "' is not a cnnviz decoder: " + FirstLine(e.what_without_backtrace()));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // the TorchScript importer's ErrorReport and lexer errors (fuzzing)
    throw InputError("'" + path + "' is not a cnnviz decoder (damaged archive): " + FirstLine(e.what()));
  }
  std::unique_ptr<UpconvDecoder> decoder(new UpconvDecoder());
  try {
    const json doc = json::parse(meta.toStringRef());
    const std::string format = doc.value("format", std::string());
    if (format != kFormat && format != kFormat1) {
      throw InputError("'" + path + "' has decoder format '" + format + "', expected " + kFormat + " (or " + kFormat1 + ")");
    }
    decoder->info_ = FromJson(doc);
    decoder->info_.format_version = format == kFormat1 ? 1 : 2;
    const DecoderInfo& info = decoder->info_;
    const auto in = [](int64_t value, int64_t low, int64_t high) { return value >= low && value <= high; };
    bool sizes_ok = (info.feature_shape.size() == 1 || info.feature_shape.size() == 3) && in(info.height, 1, 1 << 14) &&
                    in(info.width, 1, 1 << 14) && in(info.channels, 1, 1 << 14) && in(info.upsamplings, 0, 16);
    for (int64_t size : info.feature_shape) sizes_ok = sizes_ok && in(size, 1, 1 << 16);
    if (!sizes_ok) throw InputError("'" + path + "' has decoder metadata with impossible shapes");
  } catch (const json::exception& e) {
    throw InputError("'" + path + "' has malformed decoder metadata: " + e.what());
  }
  decoder->impl_ = std::make_unique<Impl>();
  decoder->impl_->net = std::make_shared<DecoderNet>(decoder->info_);
  decoder->impl_->device = device;
  try {
    torch::serialize::InputArchive weights;
    archive->read("decoder", weights);
    decoder->impl_->net->load(weights);
  } catch (const c10::Error& e) {
    throw InputError("'" + path + "' holds decoder weights that do not match its metadata: " +
                     FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw InputError("'" + path + "' holds damaged decoder weights: " + FirstLine(e.what()));
  }
  decoder->impl_->net->to(device);
  auto state = std::make_unique<torch::serialize::InputArchive>();
  if (archive->try_read("optimizer", *state)) decoder->impl_->optimizer_state = std::move(state);
  return decoder;
}

void UpconvDecoder::CheckCompatible(const Probe& probe) const {
  const Model& model = probe.model();
  const std::string made_for = "layer '" + (info_.layer_alias.empty() ? info_.layer : info_.layer_alias) +
                               "' of model " + info_.model_path + " (fingerprint " + info_.model_fingerprint + ")";
  if (model.Fingerprint() != info_.model_fingerprint) {
    throw InputError("this decoder was trained for " + made_for + ", not for " + model.path() + " (fingerprint " +
                     model.Fingerprint() + ")");
  }
  const InputSpec& spec = model.input_spec();
  if (spec.height != info_.height || spec.width != info_.width) {
    throw InputError("this decoder makes " + std::to_string(info_.height) + "x" + std::to_string(info_.width) +
                     " images but the model is set to " + std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                     " (use --input-size " + std::to_string(info_.height) + ")");
  }
  probe.Find(info_.layer);
}

at::Tensor UpconvDecoder::Decode(const at::Tensor& features) const {
  return impl_->net->forward(features.to(impl_->device, at::kFloat));
}

int64_t UpconvDecoder::ParameterCount() const {
  int64_t count = 0;
  for (const auto& p : impl_->net->parameters()) count += p.numel();
  return count;
}

void DecoderTrainOptions::Check() const {
  if (layer.empty()) throw UsageError("--layer is required");
  if (out.empty()) throw UsageError("--out (decoder file) is required");
  if (epochs < 1) throw UsageError("--epochs must be at least 1");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (!(learning_rate > 0)) throw UsageError("--lr must be positive");
  if (!(val_fraction > 0 && val_fraction < 1)) throw UsageError("--val-fraction must be in (0, 1)");
  if (channels < 0) throw UsageError("--channels must be >= 0");
  if (cache_mb < 0) throw UsageError("--cache-mb must be >= 0");
}

struct DecoderTraining {
  static DecoderNet& Net(UpconvDecoder& decoder) { return *decoder.impl_->net; }
  static std::unique_ptr<torch::serialize::InputArchive>& OptimizerState(UpconvDecoder& decoder) {
    return decoder.impl_->optimizer_state;
  }
};

namespace {

// Indices into a source, as a source.
class Subset : public ImageSource {
 public:
  Subset(const ImageSource& source, std::vector<size_t> indices) : source_(source), indices_(std::move(indices)) {}
  size_t size() const override { return indices_.size(); }
  std::string Name(size_t index) const override { return source_.Name(indices_[index]); }
  at::Tensor Load(size_t index) const override { return source_.Load(indices_[index]); }

 private:
  const ImageSource& source_;
  std::vector<size_t> indices_;
};

}  // namespace

DecoderTrainResult TrainDecoder(const Probe& probe, const ImageSource& images, const std::string& dataset_name,
                                const DecoderTrainOptions& options, const TrainProgress& progress) {
  options.Check();
  at::AutoGradMode enable_grad(true);  // whatever the caller's mode, training needs gradients
  const Model& model = probe.model();
  const InputSpec& spec = model.input_spec();
  const LayerInfo& layer = probe.Find(options.layer);
  const c10::Device device = model.device();
  ViewSpec view{{layer.name}, false};
  view.inference = true;

  // The seeded split.
  size_t count = images.size();
  if (options.max_images > 0) count = std::min(count, options.max_images);
  if (count < 2) throw InputError("'" + dataset_name + "' has " + std::to_string(count) + " image(s); training needs at least 2");
  std::vector<size_t> order(images.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 split_rng(options.seed);
  std::shuffle(order.begin(), order.end(), split_rng);
  order.resize(count);
  const size_t val_count = std::clamp<size_t>(static_cast<size_t>(std::lround(options.val_fraction * count)), 1, count - 1);

  // The decoder's shape, from the layer's.
  DecoderInfo info;
  info.model_path = model.path();
  info.model_fingerprint = model.Fingerprint();
  info.layer = layer.name;
  info.layer_alias = options.layer;
  info.feature_shape.assign(layer.shape.begin() + 1, layer.shape.end());
  info.height = spec.height;
  info.width = spec.width;
  if (info.feature_shape.size() != 3 && info.feature_shape.size() != 1) {
    throw ModelError("layer '" + options.layer + "' has output shape of rank " + std::to_string(layer.shape.size()) +
                     "; decoders invert [N,C,H,W] or [N,F] features");
  }
  const int64_t feature_channels = info.feature_shape[0];
  info.channels = options.channels > 0 ? options.channels : std::min<int64_t>(256, std::max<int64_t>(64, feature_channels));
  const int64_t base = info.feature_shape.size() == 3 ? std::min(info.feature_shape[1], info.feature_shape[2]) : 4;
  const double ratio = static_cast<double>(std::max(spec.height, spec.width)) / static_cast<double>(std::max<int64_t>(1, base));
  // The nearest power of two (ceil made AlexNet's conv3, 13 -> 224, run its last up-convolution at 416x416).
  info.upsamplings = ratio > 1 ? std::max<int64_t>(1, std::lround(std::log2(ratio))) : 0;
  info.seed = options.seed;

  // Memory: decoded images, cached features and the decoder's activations share the budget.
  DecoderTrainResult result;
  const double mib = 1024.0 * 1024.0;
  const double budget = static_cast<double>(options.cache_mb > 0 ? options.cache_mb : 2048) * mib;
  const int64_t per_image = DecoderNet(info).TrainingBytesPerImage(info);
  const int64_t micro_batch =
      std::clamp<int64_t>(static_cast<int64_t>(budget / 4.0 / static_cast<double>(per_image)), 1, options.batch);
  result.micro_batch = micro_batch;
  const int64_t feature_numel = std::accumulate(layer.shape.begin() + 1, layer.shape.end(), int64_t{1}, std::multiplies<>());
  const double pixel_bytes = static_cast<double>(count) * 3.0 * static_cast<double>(spec.height * spec.width);
  const double feature_bytes = static_cast<double>(count) * static_cast<double>(feature_numel) * 4.0;
  const double activation_bytes = static_cast<double>(micro_batch * per_image);
  result.features_cached = options.cache_mb > 0 && pixel_bytes + feature_bytes + activation_bytes <= budget;
  if (pixel_bytes + activation_bytes > budget) {
    LogWarn("the " + std::to_string(count) + " decoded images (" + std::to_string(std::lround(pixel_bytes / mib)) +
            " MiB) and the decoder's activations exceed --cache-mb " + std::to_string(options.cache_mb) +
            "; use --max-images to stay within it");
  }

  // Decode every image once (uint8 in memory), compute the features once (for their statistics, and kept
  // when they fit), into tensors allocated once: concatenating parts would hold everything twice.
  const Subset subset(images, order);
  const auto feature_started = Clock::now();
  at::Tensor pixels = at::empty({static_cast<int64_t>(count), 3, spec.height, spec.width}, at::kByte);
  std::vector<int64_t> cache_shape{static_cast<int64_t>(count)};
  cache_shape.insert(cache_shape.end(), info.feature_shape.begin(), info.feature_shape.end());
  at::Tensor features = result.features_cached ? at::empty(cache_shape, at::kFloat) : at::Tensor();
  std::vector<bool> is_val;
  // Per-channel sums over the training images, for the standardization.
  at::Tensor channel_sum = at::zeros({feature_channels}, at::kDouble), channel_sum2 = at::zeros({feature_channels}, at::kDouble);
  double channel_count = 0;
  int64_t filled = 0;
  {
    at::NoGradGuard no_grad;
    BatchPrefetcher prefetcher(subset, static_cast<size_t>(std::max<int64_t>(options.batch, 16)), spec.height, spec.width);
    ImageBatch batch;
    while (prefetcher.Next(&batch)) {
      for (const auto& failure : batch.failures) {
        LogWarn("skipping " + failure.second);
        ++result.skipped_images;
      }
      if (!batch.images.defined()) continue;
      const int64_t n = batch.images.size(0);
      pixels.narrow(0, filled, n).copy_(batch.images.mul(255.0).round_().to(at::kByte));
      std::vector<int64_t> train_in_batch;
      for (size_t k = 0; k < batch.indices.size(); ++k) {
        is_val.push_back(batch.indices[k] < val_count);
        if (batch.indices[k] >= val_count) train_in_batch.push_back(static_cast<int64_t>(k));
      }
      const at::Tensor out = probe.Run(view, model.Preprocess(batch.images.to(device))).taps[0].to(at::kCPU, at::kFloat);
      if (!train_in_batch.empty()) {
        const at::Tensor train = out.index_select(0, at::tensor(train_in_batch, at::kLong)).to(at::kDouble);
        const std::vector<int64_t> dims = train.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
        channel_sum += train.sum(dims);
        channel_sum2 += train.pow(2).sum(dims);
        channel_count += static_cast<double>(train.numel() / feature_channels);
      }
      if (result.features_cached) features.narrow(0, filled, n).copy_(out);
      filled += n;
    }
  }
  if (filled == 0) throw InputError("no image of '" + dataset_name + "' could be decoded");
  pixels = pixels.narrow(0, 0, filled);
  if (result.features_cached) features = features.narrow(0, 0, filled);
  result.feature_seconds = std::chrono::duration<double>(Clock::now() - feature_started).count();
  std::vector<int64_t> train_rows, val_rows;
  for (size_t i = 0; i < is_val.size(); ++i) (is_val[i] ? val_rows : train_rows).push_back(static_cast<int64_t>(i));
  if (train_rows.empty() || val_rows.empty()) {
    throw InputError("'" + dataset_name + "': too few decodable images for a training and a validation split");
  }
  auto rows_tensor = [](const std::vector<int64_t>& rows) { return at::tensor(rows, at::kLong); };
  const at::Tensor train_index = rows_tensor(train_rows), val_index = rows_tensor(val_rows);
  info.dataset = dataset_name;
  info.train_images = static_cast<int64_t>(train_rows.size());
  info.val_images = static_cast<int64_t>(val_rows.size());
  info.batch = options.batch;
  info.learning_rate = options.learning_rate;

  // The baseline: the mean training image for every held-out image.
  at::Tensor mean_image;
  double baseline_loss = 0;
  {
    at::NoGradGuard no_grad;
    mean_image = pixels.index_select(0, train_index).to(at::kFloat).div(255.0).mean(0, true);
    const at::Tensor val_images = pixels.index_select(0, val_index).to(at::kFloat).div(255.0);
    baseline_loss = (val_images - mean_image).pow(2).mean().item<double>();
  }

  // Decoder: new, or resumed from the file.
  std::unique_ptr<UpconvDecoder> decoder;
  if (options.resume && fs::exists(options.out)) {
    decoder = UpconvDecoder::Load(options.out, device);
    const DecoderInfo& old = decoder->info();
    if (old.model_fingerprint != info.model_fingerprint || old.layer != info.layer || old.height != info.height ||
        old.width != info.width) {
      throw InputError("--resume: '" + options.out + "' was trained for layer '" + old.layer + "' of model " +
                       old.model_path + " at " + std::to_string(old.height) + "x" + std::to_string(old.width) +
                       ", not for this model and layer");
    }
    LogInfo("resuming " + options.out + " after epoch " + std::to_string(old.epochs_done));
  } else {
    decoder = std::make_unique<UpconvDecoder>(info, options.seed, device);
    if (info.format_version >= 2) {
      const at::Tensor mean = channel_sum / std::max(1.0, channel_count);
      const at::Tensor variance = (channel_sum2 / std::max(1.0, channel_count) - mean.pow(2)).clamp_min(0);
      // Channels that never vary (dead units) stay 0 instead of being blown up.
      const at::Tensor scale = at::where(variance > 1e-12, variance.clamp_min(1e-12).rsqrt(), at::zeros_like(variance));
      DecoderTraining::Net(*decoder).SetStatistics(mean.to(device, at::kFloat), scale.to(device, at::kFloat),
                                                   mean_image.to(device));
    }
  }
  DecoderInfo& record = decoder->mutable_info();
  record.dataset = info.dataset;
  record.train_images = info.train_images;
  record.val_images = info.val_images;
  record.batch = info.batch;
  record.learning_rate = info.learning_rate;
  record.mean_image_val_loss = baseline_loss;
  DecoderNet& net = DecoderTraining::Net(*decoder);
  torch::optim::Adam optimizer(net.parameters(), torch::optim::AdamOptions(options.learning_rate));
  if (auto& state = DecoderTraining::OptimizerState(*decoder); state && options.resume) {
    optimizer.load(*state);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(options.learning_rate);
    }
  }

  auto batch_features = [&](const at::Tensor& rows) {
    if (result.features_cached) return features.index_select(0, rows).to(device);
    at::NoGradGuard no_grad;
    const at::Tensor batch = pixels.index_select(0, rows).to(device, at::kFloat).div(255.0);
    return probe.Run(view, model.Preprocess(batch)).taps[0].detach();
  };
  auto batch_images = [&](const at::Tensor& rows) {
    return pixels.index_select(0, rows).to(device, at::kFloat).div(255.0);
  };
  const double pixels_per_image = static_cast<double>(3 * spec.height * spec.width);
  auto validation_loss = [&]() {
    at::NoGradGuard no_grad;
    net.eval();
    double total = 0;
    for (int64_t start = 0; start < val_index.size(0); start += micro_batch) {
      const at::Tensor rows = val_index.slice(0, start, std::min(val_index.size(0), start + micro_batch));
      total += torch::mse_loss(net.forward(batch_features(rows)), batch_images(rows), at::Reduction::Sum).item<double>();
    }
    net.train();
    return total / (static_cast<double>(val_index.size(0)) * pixels_per_image);
  };

  result.first_epoch = record.epochs_done + 1;
  const int64_t batches = (train_index.size(0) + options.batch - 1) / options.batch;
  net.train();
  for (int64_t epoch = result.first_epoch; epoch <= options.epochs; ++epoch) {
    const auto epoch_started = Clock::now();
    at::Generator generator = at::detail::createCPUGenerator(options.seed * 7919ULL + static_cast<uint64_t>(epoch));
    const at::Tensor shuffled = train_index.index_select(0, at::randperm(train_index.size(0), generator, at::kLong));
    double loss_sum = 0;
    int64_t seen = 0;
    for (int64_t b = 0; b < batches; ++b) {
      const at::Tensor rows = shuffled.slice(0, b * options.batch, std::min(shuffled.size(0), (b + 1) * options.batch));
      const int64_t size = rows.size(0);
      optimizer.zero_grad();
      double batch_loss = 0;
      // Micro-batches: the gradient of the batch's mean squared error, in pieces that fit the budget.
      for (int64_t start = 0; start < size; start += micro_batch) {
        const at::Tensor part = rows.slice(0, start, std::min(size, start + micro_batch));
        const at::Tensor loss = torch::mse_loss(net.forward(batch_features(part)), batch_images(part), at::Reduction::Sum) /
                                (static_cast<double>(size) * pixels_per_image);
        loss.backward();
        batch_loss += loss.item<double>();
      }
      optimizer.step();
      loss_sum += batch_loss * static_cast<double>(size);
      seen += size;
      if (progress) progress(epoch, options.epochs, b + 1, batches, loss_sum / static_cast<double>(seen));
    }
    result.trained_images += seen;
    result.train_seconds += std::chrono::duration<double>(Clock::now() - epoch_started).count();
    record.train_loss.push_back(loss_sum / static_cast<double>(seen));
    record.val_loss.push_back(validation_loss());
    record.epochs_done = epoch;
    record.beats_mean_image = record.val_loss.back() < (1.0 - kBetterMargin) * record.mean_image_val_loss;
    record.train_seconds += std::chrono::duration<double>(Clock::now() - epoch_started).count();
    char line[200];
    std::snprintf(line, sizeof(line), "epoch %lld/%lld: train loss %.5f, validation loss %.5f (mean-image baseline %.5f, %+.1f%%)",
                  static_cast<long long>(epoch), static_cast<long long>(options.epochs), record.train_loss.back(),
                  record.val_loss.back(), record.mean_image_val_loss,
                  100.0 * (record.val_loss.back() / std::max(record.mean_image_val_loss, 1e-12) - 1.0));
    LogInfo(line);
    SaveArchive(options.out, record, net, &optimizer);
  }
  if (result.first_epoch > options.epochs) {
    LogWarn("'" + options.out + "' already has " + std::to_string(record.epochs_done) +
            " epoch(s); nothing to train (raise --epochs)");
  }
  if (!record.val_loss.empty() && !record.beats_mean_image) {
    char line[240];
    std::snprintf(line, sizeof(line),
                  "the decoder is not better than the mean training image on the held-out images (validation loss "
                  "%.5f, baseline %.5f): its reconstructions show what the mean image would; train longer or on "
                  "more images",
                  record.val_loss.back(), record.mean_image_val_loss);
    LogWarn(line);
  }
  net.eval();
  result.images_per_second = result.train_seconds > 0 ? static_cast<double>(result.trained_images) / result.train_seconds : 0;
  result.decoder = std::move(decoder);
  return result;
}

}  // namespace cnnviz
