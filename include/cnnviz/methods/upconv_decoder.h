// Network inversion with a learned up-convolutional decoder (Dosovitskiy & Brox, "Inverting Visual
// Representations with Convolutional Networks", CVPR 2016): a network trained to map a layer's features
// back to the image, so that an inversion is one forward pass.
//
// Design (the paper's, sized to the layer): features [C,h,w] -> two 3x3 convolutions at the feature
// resolution, then k = ceil(log2(input / h)) up-convolutions (the paper's: 2x2 unpooling into zeros, then
// a 5x5 convolution) halving the channels (at least 32), all with leaky ReLU (0.2), then a 3x3 convolution
// to RGB; features without spatial extent [F]
// first go through a linear layer to a 4x4 map. Output: the image in [0,1] RGB at the model's input size
// (bilinear resize when the input is not h·2^k). Loss: mean squared pixel error; Adam.
//
// The training cost the survey names as this method's limit is kept small: the model runs once per image
// (truncated after the layer, batched, no gradients) and its features are cached in memory when they fit
// (--cache-mb), so each epoch trains the decoder alone.
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
  int64_t batch = 32;
  // Adam learning rate (the paper: 1e-4 over many more iterations). Default 1e-3.
  double learning_rate = 1e-3;
  // Fraction of the images held out for validation (seeded split). Default 0.1.
  double val_fraction = 0.1;
  // Use at most this many images (0 = all).
  size_t max_images = 0;
  // Channels of the decoder's first convolutions (0 = min(256, max(64, layer channels))).
  int64_t channels = 0;
  // Cache the layer's features in memory when they take at most this many MiB (0 = never cache).
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
  int64_t first_epoch = 1;          // 1, or later when resumed
};

// (epoch, epochs, batch, batches, running loss)
using TrainProgress = std::function<void(int64_t, int64_t, int64_t, int64_t, double)>;

// Trains a decoder for `options.layer` of `probe`'s model on `images`, writing `options.out` after every
// epoch. Throws UsageError/InputError for bad options, too few images, or a resume file made for
// another model or layer.
DecoderTrainResult TrainDecoder(const Probe& probe, const ImageSource& images, const std::string& dataset_name,
                                const DecoderTrainOptions& options, const TrainProgress& progress = nullptr);

}  // namespace cnnviz
