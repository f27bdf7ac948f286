// Network inversion with a learned up-convolutional decoder (Dosovitskiy & Brox, "Inverting Visual
// Representations with Convolutional Networks", CVPR 2016): a network trained to map a layer's features
// back to the image, so that an inversion is one forward pass.
//
// Design (the paper's, sized to the layer): features [C,h,w] -> two 3x3 convolutions at the feature
// resolution, then k = ceil(log2(input / h)) up-convolutions (the paper's: 2x2 unpooling into zeros, then
// a 5x5 convolution) halving the channels (at least 32), all with leaky ReLU (0.2), then a 3x3 convolution
// to RGB; features without spatial extent [F]
// first go through a linear layer to a 4x4 map. k = round(log2(input / h)) (at least 1 when h < input), so
// the last, most expensive up-convolution does not run at up to twice the input size; the output is
// resized (bilinear) to the model's input size when it is not h·2^k. Loss: mean squared pixel error; Adam.
//
// Two changes to the paper's recipe make short trainings useful (format cnnviz-decoder-2; files of format
// 1 still load and decode as before): the features are standardized per channel with the training
// images' mean and standard deviation, and the decoder predicts the difference to the mean training
// image (its last convolution starts at zero, so an untrained decoder is the mean-image baseline). On the
// demo's setting (tinycnn conv3, 450 training images, 3 epochs) the paper's recipe ended above the
// baseline's validation loss; see README.md for the measured numbers.
//
// The training cost the survey names as this method's limit is kept small: the model runs once per image
// (truncated after the layer, batched, no gradients) and its features are cached in memory when they fit
// the memory budget (--cache-mb), so each epoch trains the decoder alone. The budget also bounds the
// decoder's activations: a batch larger than fits is run as micro-batches whose gradients add up to the
// batch's.
//
// A decoder file holds the decoder, its Adam state and metadata (model fingerprint, layer, shapes,
// training curve); it is rewritten atomically after every epoch, so an interrupted training resumes
// from the last finished epoch and a finished one can be trained further.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cnnviz/data/image_source.h"
#include "cnnviz/model/probe.h"

namespace cnnviz {

// What a decoder was made for and how it was trained; stored in the decoder file.
struct DecoderInfo {
  std::string model_path;         // for messages only
  std::string model_fingerprint;  // Model::Fingerprint() of the model whose features it inverts
  std::string layer;              // module path
  std::string layer_alias;        // as the user named it
  std::vector<int64_t> feature_shape;  // [C,h,w] or [F]
  int64_t height = 0, width = 0;       // image size (the model's input size)
  int64_t channels = 0;                // channels of the first convolutions
  int64_t upsamplings = 0;
  // 2: standardized features and a residual to `mean image`; 1: the paper's plain decoder (older files).
  int64_t format_version = 2;
  // Training record.
  std::string dataset;
  int64_t train_images = 0, val_images = 0;
  int64_t epochs_done = 0;
  int64_t batch = 0;
  double learning_rate = 0;
  uint64_t seed = 0;
  std::vector<double> train_loss;  // per epoch, mean squared error per pixel, [0,1] units
  std::vector<double> val_loss;    // per epoch, on the held-out images
  double mean_image_val_loss = 0;  // the baseline: the mean training image predicted for every image
  // Whether the last validation loss is below the baseline's, by at least 0.1% (false: the decoder has
  // learned nothing the mean image does not already give; training warns).
  bool beats_mean_image = false;
  double train_seconds = 0;        // all epochs so far
};

class UpconvDecoder {
 public:
  // A new decoder with random weights (seeded) for `info`'s shapes.
  UpconvDecoder(const DecoderInfo& info, uint64_t seed, const c10::Device& device);
  // Loads a decoder file. Throws InputError when it is missing or not a cnnviz decoder.
  static std::unique_ptr<UpconvDecoder> Load(const std::string& path, const c10::Device& device);
  ~UpconvDecoder();

  // Throws InputError when this decoder was not made for `probe`'s model (fingerprint) or its input
  // size, naming what it was made for.
  void CheckCompatible(const Probe& probe) const;

  const DecoderInfo& info() const { return info_; }
  DecoderInfo& mutable_info() { return info_; }
  // Features [N, feature_shape...] -> images [N,3,H,W] (unclamped; [0,1] is the target range).
  at::Tensor Decode(const at::Tensor& features) const;
  int64_t ParameterCount() const;

 private:
  friend struct DecoderTraining;
  struct Impl;
  UpconvDecoder() = default;
  DecoderInfo info_;
  std::unique_ptr<Impl> impl_;
};

struct DecoderTrainOptions {
  // Layer (module path or alias) whose features are inverted. Required.
  std::string layer;
  // Decoder file to write (and to resume from with `resume`). Required.
  std::string out;
  int64_t epochs = 20;
  // Images per Adam step. Default 16 (twice the steps per epoch of 32; on the demo's 3 epochs: validation
  // loss 24% below the mean-image baseline, 23% with 32).
  int64_t batch = 16;
  // Adam learning rate (the paper: 1e-4 over many more iterations). Default 1e-3.
  double learning_rate = 1e-3;
  // Fraction of the images held out for validation (seeded split). Default 0.1.
  double val_fraction = 0.1;
  // Use at most this many images (0 = all).
  size_t max_images = 0;
  // Channels of the decoder's first convolutions (0 = min(256, max(64, layer channels))).
  int64_t channels = 0;
  // Memory budget in MiB for what training holds besides the model: the decoded images (uint8), the cached
  // features and the decoder's activations (micro-batches keep these within a quarter of the budget).
  // Features are cached when everything fits. 0 = never cache features (the rest then gets 2048 MiB).
  int64_t cache_mb = 2048;
  // Continue from `out` when it exists (same model and layer).
  bool resume = false;
  uint64_t seed = 0;
  void Check() const;
};

struct DecoderTrainResult {
  std::unique_ptr<UpconvDecoder> decoder;
  bool features_cached = false;
  int64_t skipped_images = 0;       // images that could not be decoded
  double feature_seconds = 0;       // computing the cached features
  double images_per_second = 0;     // training throughput of this run's epochs (images through the decoder)
  double train_seconds = 0;         // this run's training steps (without validation and saving)
  int64_t trained_images = 0;       // images through the decoder in this run (epochs x training images)
  int64_t micro_batch = 0;          // images per forward/backward pass (the batch, or less to fit the budget)
  int64_t first_epoch = 1;          // 1, or later when resumed
};

// (epoch, epochs, batch, batches, running loss)
using TrainProgress = std::function<void(int64_t, int64_t, int64_t, int64_t, double)>;

// Trains a decoder for `options.layer` of `probe`'s model on `images`, writing `options.out` after every
// epoch and logging each epoch's training and validation loss beside the mean-image baseline; warns when
// the final validation loss is not below the baseline (DecoderInfo::beats_mean_image). Throws
// UsageError/InputError for bad options, too few images, or a resume file made for another model or layer.
DecoderTrainResult TrainDecoder(const Probe& probe, const ImageSource& images, const std::string& dataset_name,
                                const DecoderTrainOptions& options, const TrainProgress& progress = nullptr);

}  // namespace cnnviz
