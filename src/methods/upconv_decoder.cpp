#include "cnnviz/methods/upconv_decoder.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
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
constexpr const char* kFormat = "cnnviz-decoder-1";

json ToJson(const DecoderInfo& info) {
  return {{"format", kFormat},
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
  explicit DecoderNet(const DecoderInfo& info) : height(info.height), width(info.width), first(info.channels) {
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
  }

  torch::Tensor forward(torch::Tensor x) {
    if (fc) x = torch::leaky_relu(fc->forward(x.flatten(1)), 0.2).view({x.size(0), first, 4, 4});
    for (const auto& conv : *convs) x = torch::leaky_relu(conv->as<torch::nn::Conv2d>()->forward(x), 0.2);
    for (const auto& conv : *upconvs) x = torch::leaky_relu(conv->as<torch::nn::Conv2d>()->forward(Unpool(x)), 0.2);
    x = out->forward(x);
    if (x.size(2) != height || x.size(3) != width) x = torch::upsample_bilinear2d(x, {height, width}, false);
    return x;
  }

  int64_t height, width, first;
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
    if (doc.value("format", std::string()) != kFormat) {
      throw InputError("'" + path + "' has decoder format '" + doc.value("format", std::string()) + "', expected " + kFormat);
    }
    decoder->info_ = FromJson(doc);
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

  // Decode every image once (uint8 in memory) and compute features once when they fit.
  DecoderTrainResult result;
  const Subset subset(images, order);
  std::vector<at::Tensor> pixels_list, features_list;
  std::vector<bool> is_val;
  const int64_t feature_numel = std::accumulate(layer.shape.begin() + 1, layer.shape.end(), int64_t{1}, std::multiplies<>());
  const double feature_mb = static_cast<double>(count) * feature_numel * 4.0 / (1024.0 * 1024.0);
  result.features_cached = options.cache_mb > 0 && feature_mb <= static_cast<double>(options.cache_mb);
  const auto feature_started = Clock::now();
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
      pixels_list.push_back(batch.images.mul(255.0).round_().to(at::kByte));
      for (size_t index : batch.indices) is_val.push_back(index < val_count);
      if (result.features_cached) {
        features_list.push_back(probe.Run(view, model.Preprocess(batch.images.to(device))).taps[0].to(at::kCPU));
      }
    }
  }
  if (pixels_list.empty()) throw InputError("no image of '" + dataset_name + "' could be decoded");
  const at::Tensor pixels = at::cat(pixels_list);
  const at::Tensor features = result.features_cached ? at::cat(features_list) : at::Tensor();
  result.feature_seconds = std::chrono::duration<double>(Clock::now() - feature_started).count();
  std::vector<int64_t> train_rows, val_rows;
  for (size_t i = 0; i < is_val.size(); ++i) (is_val[i] ? val_rows : train_rows).push_back(static_cast<int64_t>(i));
  if (train_rows.empty() || val_rows.empty()) {
    throw InputError("'" + dataset_name + "': too few decodable images for a training and a validation split");
  }
  auto rows_tensor = [](const std::vector<int64_t>& rows) { return at::tensor(rows, at::kLong); };
  const at::Tensor train_index = rows_tensor(train_rows), val_index = rows_tensor(val_rows);

  // Decoder: new, or resumed from the file.
  std::unique_ptr<UpconvDecoder> decoder;
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
  info.upsamplings = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(std::log2(ratio) - 1e-9)));
  info.dataset = dataset_name;
  info.train_images = static_cast<int64_t>(train_rows.size());
  info.val_images = static_cast<int64_t>(val_rows.size());
  info.batch = options.batch;
  info.learning_rate = options.learning_rate;
  info.seed = options.seed;

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
  }
  DecoderInfo& record = decoder->mutable_info();
  record.dataset = info.dataset;
  record.train_images = info.train_images;
  record.val_images = info.val_images;
  record.batch = info.batch;
  record.learning_rate = info.learning_rate;
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
  auto validation_loss = [&]() {
    at::NoGradGuard no_grad;
    net.eval();
    double total = 0;
    for (int64_t start = 0; start < val_index.size(0); start += options.batch) {
      const at::Tensor rows = val_index.slice(0, start, std::min(val_index.size(0), start + options.batch));
      total += torch::mse_loss(net.forward(batch_features(rows)), batch_images(rows), at::Reduction::Sum).item<double>();
    }
    net.train();
    return total / static_cast<double>(val_index.size(0) * 3 * spec.height * spec.width);
  };
  {
    at::NoGradGuard no_grad;
    const at::Tensor mean_image = pixels.index_select(0, train_index).to(at::kFloat).div(255.0).mean(0, true);
    const at::Tensor val_images = pixels.index_select(0, val_index).to(at::kFloat).div(255.0);
    record.mean_image_val_loss = (val_images - mean_image).pow(2).mean().item<double>();
  }

  result.first_epoch = record.epochs_done + 1;
  const int64_t batches = (train_index.size(0) + options.batch - 1) / options.batch;
  int64_t trained_images = 0;
  double trained_seconds = 0;
  net.train();
  for (int64_t epoch = result.first_epoch; epoch <= options.epochs; ++epoch) {
    const auto epoch_started = Clock::now();
    at::Generator generator = at::detail::createCPUGenerator(options.seed * 7919ULL + static_cast<uint64_t>(epoch));
    const at::Tensor shuffled = train_index.index_select(0, at::randperm(train_index.size(0), generator, at::kLong));
    double loss_sum = 0;
    int64_t seen = 0;
    for (int64_t b = 0; b < batches; ++b) {
      const at::Tensor rows = shuffled.slice(0, b * options.batch, std::min(shuffled.size(0), (b + 1) * options.batch));
      const at::Tensor input = batch_features(rows);
      const at::Tensor target = batch_images(rows);
      optimizer.zero_grad();
      const at::Tensor loss = torch::mse_loss(net.forward(input), target);
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>() * static_cast<double>(rows.size(0));
      seen += rows.size(0);
      if (progress) progress(epoch, options.epochs, b + 1, batches, loss_sum / static_cast<double>(seen));
    }
    trained_images += seen;
    const double epoch_seconds = std::chrono::duration<double>(Clock::now() - epoch_started).count();
    trained_seconds += epoch_seconds;
    record.train_loss.push_back(loss_sum / static_cast<double>(seen));
    record.val_loss.push_back(validation_loss());
    record.epochs_done = epoch;
    record.train_seconds += std::chrono::duration<double>(Clock::now() - epoch_started).count();
    SaveArchive(options.out, record, net, &optimizer);
  }
  if (result.first_epoch > options.epochs) {
    LogWarn("'" + options.out + "' already has " + std::to_string(record.epochs_done) +
            " epoch(s); nothing to train (raise --epochs)");
  }
  net.eval();
  result.images_per_second = trained_seconds > 0 ? static_cast<double>(trained_images) / trained_seconds : 0;
  result.decoder = std::move(decoder);
  return result;
}

}  // namespace cnnviz
