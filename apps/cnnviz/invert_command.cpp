#include "cnnviz/invert_command.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/core/precision.h"
#include "cnnviz/io/grid.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/report.h"
#include "cnnviz/options_json.h"
#include "cnnviz/progress.h"
#include "cnnviz/units.h"

namespace cnnviz::app {
namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

json CurveJson(const LayerInversion& inversion) {
  return {{"steps", inversion.curve_steps},
          {"objective", inversion.objective_curve},
          {"feature_error", inversion.error_curve}};
}

json DecoderJson(const DecoderInfo& info, const std::string& path) {
  return {{"path", path},
          {"layer", info.layer},
          {"layer_alias", info.layer_alias},
          {"feature_shape", info.feature_shape},
          {"channels", info.channels},
          {"upsamplings", info.upsamplings},
          {"dataset", info.dataset},
          {"train_images", info.train_images},
          {"val_images", info.val_images},
          {"epochs", info.epochs_done},
          {"batch", info.batch},
          {"learning_rate", info.learning_rate},
          {"train_seconds", info.train_seconds},
          {"training_curve", {{"train_loss", info.train_loss}, {"val_loss", info.val_loss}}},
          {"mean_image_val_loss", info.mean_image_val_loss},
          {"beats_mean_image", info.beats_mean_image},
          {"format_version", info.format_version}};
}

}  // namespace

void RunInvert(InvertCommandOptions options, const GlobalOptions& global) {
  const auto started = Clock::now();
  if (options.image.empty()) throw UsageError("--image is required");
  if (options.layers_text.empty() && options.decoder.empty()) {
    throw UsageError("give --layer/--layers (optimization) and/or --decoder (a trained decoder)");
  }
  const bool npy = fs::path(options.image).extension() == ".npy";
  // An image fails with InputError before the model loads; a .npy is read against the model's input.
  at::Tensor image = npy ? at::Tensor() : ReadImage(options.image);
  std::shared_ptr<Model> model = LoadModel(options.model, global);
  std::unique_ptr<UpconvDecoder> decoder;
  if (!options.decoder.empty()) {
    decoder = UpconvDecoder::Load(options.decoder, model->device());
    // A decoder fixes the input size it was trained at.
    if (!options.model.input_size) {
      model->mutable_input_spec().height = decoder->info().height;
      model->mutable_input_spec().width = decoder->info().width;
    }
  }
  // A .npy is the network's input exactly; the methods optimize an RGB image in [0,1] units, so it enters
  // them as its Deprocess (unclamped), whose Preprocess gives it back to float rounding.
  if (npy) image = ReadModelInput(options.image, *model, options.npy_values).raw;
  Probe probe(model);
  if (decoder) decoder->CheckCompatible(probe);
  InversionOptions& m = options.method;
  m.seed = global.seed;
  if (options.lr_text != "auto") {
    try {
      size_t used = 0;
      m.learning_rate = std::stod(options.lr_text, &used);
      if (used != options.lr_text.size()) throw std::invalid_argument("trailing characters");
    } catch (const std::exception&) {
      throw UsageError("--lr must be auto or a number, not '" + options.lr_text + "'");
    }
    m.auto_learning_rate = false;
  }
  if (!options.layers_text.empty()) m.layers = ResolveLayerList(options.layers_text, probe);

  const OutputFolder out(options.out);
  InversionResult result;
  if (!m.layers.empty()) {
    const int64_t layer_count = static_cast<int64_t>(m.layers.size());
    ProgressReporter reporter("invert", "layers");
    result = NetworkInversion(probe).Run(image, m, [&](int64_t group, int64_t groups, int64_t step, int64_t steps) {
      // Layers are optimized in groups (one layer each by default): count the groups' layers as done.
      const double fraction = (static_cast<double>(group) + static_cast<double>(step) / std::max<int64_t>(1, steps)) /
                              static_cast<double>(std::max<int64_t>(1, groups));
      const int64_t done = step == steps ? layer_count * (group + 1) / std::max<int64_t>(1, groups)
                                         : layer_count * group / std::max<int64_t>(1, groups);
      reporter.Update(done, layer_count, fraction, "step " + std::to_string(step) + "/" + std::to_string(steps));
    });
  } else {
    const InputSpec& spec = model->input_spec();
    result.original = at::upsample_bilinear2d(image.unsqueeze(0), {spec.height, spec.width}, false)[0].clamp(0, 1);
  }

  // The decoder's reconstruction: one forward pass.
  LayerInversion decoded;
  if (decoder) {
    const auto decode_started = Clock::now();
    at::NoGradGuard no_grad;
    const ViewSpec view{{decoder->info().layer}, false};
    const at::Tensor original = result.original.unsqueeze(0).to(model->device());
    const at::Tensor target = probe.Run(view, model->Preprocess(original)).taps[0];
    const at::Tensor reconstruction = decoder->Decode(target);
    decoded.seconds = std::chrono::duration<double>(Clock::now() - decode_started).count();
    const at::Tensor shown = reconstruction.clamp(0, 1);
    const at::Tensor features = probe.Run(view, model->Preprocess(shown)).taps[0];
    decoded.layer = decoder->info().layer_alias.empty() ? decoder->info().layer : decoder->info().layer_alias;
    decoded.raw = reconstruction[0].to(at::kCPU);
    decoded.image = shown[0].to(at::kCPU);
    decoded.feature_error = ((features - target).norm() / target.norm().clamp_min(1e-12)).item<double>();
    const double mse = (decoded.image - result.original).pow(2).mean().item<double>();
    decoded.pixel_rmse = std::sqrt(mse);
    decoded.psnr = 10.0 * std::log10(1.0 / std::max(mse, 1e-12));
  }


  std::vector<at::Tensor> tiles{result.original};
  std::vector<std::string> captions{"original"};
  WritePng(out.File("original.png"), result.original);
  json records = json::array();
  auto write = [&](const LayerInversion& inversion, const std::string& method) {
    const std::string stem = SafeFileName((method == "decoder" ? "decoder_" : "") + inversion.layer);
    WritePng(out.File("layers/" + stem + ".png"), inversion.image);
    // The layer by its sidecar alias when it has one, and the PSNR, in full (MakeGrid wraps long ones).
    const LayerInfo& info = probe.Find(inversion.layer);
    const std::string name = info.alias.empty() ? inversion.layer : info.alias;
    char psnr[32];
    std::snprintf(psnr, sizeof(psnr), "PSNR %.1f dB", inversion.psnr);
    tiles.push_back(inversion.image);
    captions.push_back((method == "decoder" ? "decoder " : "") + name + " " + psnr);
    json record = {{"method", method},
                   {"layer", inversion.layer},
                   {"module", probe.Find(inversion.layer).name},
                   {"feature_error", inversion.feature_error},
                   {"pixel_rmse", inversion.pixel_rmse},
                   {"psnr_db", inversion.psnr},
                   {"seconds", inversion.seconds},
                   {"image", "layers/" + stem + ".png"}};
    if (method == "optimization") {
      record["lambda_tv"] = inversion.lambda_tv;
      record["learning_rate"] = inversion.learning_rate;
      if (inversion.curvature > 0) record["curvature"] = inversion.curvature;
      if (!inversion.curvature_method.empty()) record["curvature_method"] = inversion.curvature_method;
      record["iterations"] = inversion.iterations;
      record["curve"] = CurveJson(inversion);
    }
    if (options.save_arrays) {
      WriteNpy(out.File("arrays/" + stem + ".npy"), inversion.raw);
      record["array"] = "arrays/" + stem + ".npy";
    }
    records.push_back(record);
  };
  for (const LayerInversion& inversion : result.layers) {
    if (inversion.curvature_method == "finite differences") {
      LogWarn("--lr auto at " + inversion.layer +
              ": the network has an op without a double backward (e.g. hardsigmoid), so the curvature L was "
              "estimated from Gauss-Newton products (Jacobian-vector products by finite differences)");
    }
    write(inversion, "optimization");
  }
  if (decoder) write(decoded, "decoder");
  // Small inputs are shown at 160 px so that the captions fit.
  at::Tensor strip = at::stack(tiles);
  if (strip.size(2) < 160) {
    const int64_t width = strip.size(3) * 160 / strip.size(2);
    strip = at::upsample_bilinear2d(strip, {160, width}, false).clamp(0, 1);
  }
  WritePng(out.File("grid.png"), MakeGrid(strip, captions, static_cast<int64_t>(tiles.size())));

  json report = ReportHeader("invert", *model, global.seed);
  if (m.paper_mode) {  // the paper's own prior weights, at one level
    m.prior_scale = 1.0;
    m.levels = 1;
  }
  report["options"] = ToJson(options);
  report["definitions"] = {
      {"feature_error", "||phi(x) - phi(x0)|| / ||phi(x0)|| at the layer"},
      {"pixel_rmse", "root mean squared error against the original resized to the model input, [0,1] units, after clamping"},
      {"psnr_db", "10 log10(1 / MSE)"},
      {"objective", "||phi(x)-phi0||^2/||phi0||^2 + prior_scale * (lambda_alpha/2 sum|x|^alpha + lambda_tv/2 TV_beta(x)) / sigma^2, "
                    "x in 0-255 units minus the model's mean colour, sigma = pixel_norm * sqrt(H*W)"}};
  if (decoder) report["decoder"] = DecoderJson(decoder->info(), options.decoder);
  report["precision"] = {{"network", ToString(m.precision)},
                         {"cpu_bf16", CpuBf16Flag()},
                         {"exact", "image variable, optimizer state, targets and the reported feature errors in "
                                   "float32 (the final evaluation runs the float32 network)"}};
  report["reconstructions"] = records;
  report["timings"] = {{"optimize_seconds", result.seconds},
                       {"total_seconds", std::chrono::duration<double>(Clock::now() - started).count()}};
  out.Finish(report);
  Log()->info("wrote {} reconstruction(s) to {}", records.size(), options.out);
}

std::function<void()> AddInvertCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<InvertCommandOptions>();
  InversionOptions& m = options->method;
  CLI::App* command = app.add_subcommand(
      "invert", "Network inversion: reconstruct an image from a layer's features (what does the layer keep?)");
  AddModelOptions(*command, options->model);
  command->add_option("-i,--image", options->image,
                      "Image to invert (PNG/JPEG, resized to the model's input; or a float .npy [3,H,W] at the "
                      "model's input size, see --npy-values)")
      ->required();
  AddNpyValuesOption(*command, options->npy_values);
  command->add_option("-l,--layer,--layers", options->layers_text,
                      "Layer(s) to invert from: conv3, a,b,c, all (aliased layers, else every conv) or all-conv");
  command->add_option("--decoder", options->decoder, "Also (or only) reconstruct with a decoder from `cnnviz upconv train`");
  command->add_flag("--paper", m.paper_mode,
                    "The paper's algorithm exactly: its prior weights, momentum SGD with its step schedule, random start");
  command->add_option("--steps", m.steps,
                      "Iterations: L-BFGS over all levels, or with --paper momentum SGD (lr divided by 10 after 1/4 and "
                      "by 100 after 3/4)")
      ->capture_default_str();
  command->add_option("--prior-scale", m.prior_scale, "Default mode: factor on both prior weights")->capture_default_str();
  command->add_option("--levels", m.levels, "Default mode: coarse-to-fine levels (1/4, 1/2, full size for 3; 1 = off)")
      ->capture_default_str();
  command->add_option("--lr", options->lr_text,
                      "--paper: initial learning rate of momentum SGD, or auto: 2/L, L the objective's largest curvature "
                      "at the start (the paper's 0.004 suits AlexNet only)")
      ->capture_default_str();
  command->add_option("--momentum", m.momentum, "--paper: momentum")->capture_default_str();
  command->add_option("--alpha", m.alpha, "Exponent of the alpha-norm regularizer")->capture_default_str();
  command->add_option("--lambda-alpha", m.lambda_alpha, "Weight of the alpha-norm regularizer")->capture_default_str();
  command->add_option("--beta", m.beta, "Exponent of the total-variation regularizer")->capture_default_str();
  command->add_option("--lambda-tv", m.lambda_tv, "Weight of the TV regularizer (default 1, 10 or 100 by layer depth)");
  command->add_option("--pixel-norm", m.pixel_norm, "B: average pixel norm of natural images, 0-255 units")
      ->capture_default_str();
  command->add_option("--batch", m.batch, "Layers inverted together")->capture_default_str();
  command->add_option("--target-error", m.target_error, "Stop once ||phi(x)-phi0||/||phi0|| is at most this (0 = never)")
      ->capture_default_str();
  command->add_flag("!--no-truncation", m.truncate, "Run the whole network every step (benchmarks)");
  AddPrecisionOption(*command, m.precision,
                     "the network in the iterations; the image, the optimizer, the targets and the reported "
                     "errors stay float32");
  command->add_option("-o,--out", options->out, "Output folder")->capture_default_str();
  command->add_flag("--save-arrays", options->save_arrays, "Also write each reconstruction as float32 .npy [3,H,W]");
  command->footer(
      "Regularized inversion (Mahendran & Vedaldi 2015): the paper's energy, feature distance plus alpha-norm\n"
      "(alpha 6) and TV (beta 2) priors. Default: the priors at 1/100 of the paper's weights (--prior-scale),\n"
      "minimized by L-BFGS coarse to fine (1/4, 1/2, full size; 400 iterations), so that shallow layers\n"
      "reconstruct nearly exactly. --paper: the paper's weights and optimizer (momentum SGD, 400 steps) exactly.\n"
      "With --decoder, the learned inversion of Dosovitskiy & Brox (2016): one forward pass of a decoder\n"
      "trained with `cnnviz upconv train`.\n"
      "Outputs in --out: grid.png (original | reconstructions, captioned with layer and PSNR), original.png,\n"
      "layers/<layer>.png, report.json (per reconstruction: feature error, pixel RMSE, PSNR, iterations,\n"
      "time, curves; the decoder's training curve), arrays/*.npy with --save-arrays.\n"
      "Examples:\n"
      "  cnnviz invert --model models/tinycnn.pt --image photo.png --layer conv3\n"
      "  cnnviz invert --model models/tinycnn.pt --image photo.png --layers all --out strip/\n"
      "  cnnviz invert --model models/tinycnn.pt --image photo.png --layers all --paper --out paper/\n"
      "  cnnviz invert --model models/tinycnn.pt --image photo.png --decoder conv5.decoder.pt");
  return [options, &global, command]() {
    if (command->parsed()) RunInvert(*options, global);
  };
}

void RunUpconvTrain(UpconvTrainCommandOptions options, const GlobalOptions& global) {
  const auto started = Clock::now();
  DecoderTrainOptions& m = options.method;
  m.seed = global.seed;
  m.Check();
  if (options.dataset.empty()) throw UsageError("--dataset is required");
  const std::unique_ptr<ImageSource> source = OpenImageDataset(options.dataset);
  std::shared_ptr<Model> model = LoadModel(options.model, global);
  Probe probe(model);
  probe.Find(m.layer);
  const bool tty = isatty(fileno(stderr)) && !global.quiet;
  auto last = Clock::now();
  int64_t first_epoch = -1;
  ClaimOutputFile(m.out);
  DecoderTrainResult result = TrainDecoder(
      probe, *source, options.dataset, m, [&](int64_t epoch, int64_t epochs, int64_t batch, int64_t batches, double loss) {
        if (tty) {
          constexpr int kWidth = 30;
          const int filled = static_cast<int>(kWidth * batch / std::max<int64_t>(1, batches));
          std::fprintf(stderr, "\repoch %lld/%lld [%s%s] %lld/%lld loss %.5f", static_cast<long long>(epoch),
                       static_cast<long long>(epochs), std::string(filled, '#').c_str(),
                       std::string(kWidth - filled, '.').c_str(), static_cast<long long>(batch),
                       static_cast<long long>(batches), loss);
          if (batch == batches) std::fprintf(stderr, "\n");
        } else if (Clock::now() - last > std::chrono::seconds(3) || batch == batches) {
          if (first_epoch < 0) first_epoch = epoch;
          const double fraction = (static_cast<double>(epoch - first_epoch) + static_cast<double>(batch) / std::max<int64_t>(1, batches)) /
                                  static_cast<double>(std::max<int64_t>(1, epochs - first_epoch + 1));
          const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
          Log()->info("epoch {}/{}: batch {}/{}, loss {:.5f}{}", epoch, epochs, batch, batches, loss,
                      fraction > 0 && fraction < 1 ? ", ETA " + FormatDuration(elapsed * (1 - fraction) / fraction) : "");
          last = Clock::now();
        }
      });
  const DecoderInfo& info = result.decoder->info();
  // bench/invert_bench.py parses "features ... (N s), N images/s; wrote ... in N s".
  Log()->info("{} train / {} held-out images, {} images through the decoder in {:.1f} s of training steps, micro-batch "
              "{}, features {} ({:.1f} s), {:.1f} images/s; wrote {} in {:.1f} s",
              info.train_images, info.val_images, result.trained_images, result.train_seconds, result.micro_batch,
              result.features_cached ? "cached" : "recomputed every batch", result.feature_seconds,
              result.images_per_second, m.out, std::chrono::duration<double>(Clock::now() - started).count());
}

std::function<void()> AddUpconvCommand(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<UpconvTrainCommandOptions>();
  DecoderTrainOptions& m = options->method;
  CLI::App* upconv = app.add_subcommand("upconv", "Learned inversion (Dosovitskiy & Brox 2016): train up-convolutional decoders");
  upconv->require_subcommand(1);
  CLI::App* command = upconv->add_subcommand("train", "Train a decoder from a layer's features back to the image");
  AddModelOptions(*command, options->model);
  command->add_option("-l,--layer", m.layer, "Layer whose features the decoder inverts")->required();
  command->add_option("--dataset", options->dataset, "Training images: a folder (recursive) or a Broden root")->required();
  command->add_option("-o,--out", m.out, "Decoder file to write (rewritten after every epoch)")->required();
  command->add_option("--epochs", m.epochs, "Epochs (with --resume: the total to reach)")->capture_default_str();
  command->add_option("--batch", m.batch, "Images per step")->capture_default_str();
  command->add_option("--lr", m.learning_rate, "Adam learning rate")->capture_default_str();
  command->add_option("--val-fraction", m.val_fraction, "Share of images held out for the validation loss")
      ->capture_default_str();
  command->add_option("--max-images", m.max_images, "Use at most this many images (0 = all)")->capture_default_str();
  command->add_option("--channels", m.channels, "Channels of the first decoder convolutions (0 = from the layer)")
      ->capture_default_str();
  command->add_option("--cache-mb", m.cache_mb,
                      "Memory budget in MiB besides the model: decoded images, cached features (kept when all fits; "
                      "0 = never) and decoder activations (micro-batches)")
      ->capture_default_str();
  command->add_flag("--resume", m.resume, "Continue from --out when it exists (same model and layer)");
  command->footer(
      "The model runs once per image (cut after the layer) and its features are cached in memory when they\n"
      "fit --cache-mb, so epochs train the decoder alone. Images are decoded once and kept in memory (uint8).\n"
      "Features are standardized per channel and the decoder predicts the difference to the mean training\n"
      "image. Every epoch logs the validation loss beside the mean-image baseline; a warning (and\n"
      "beats_mean_image false in the file's metadata) says when the decoder is not better than that baseline.\n"
      "The decoder file holds the weights, Adam state and metadata (model fingerprint, layer, training curve);\n"
      "it is rewritten atomically after each epoch: an interrupted run resumes with --resume.\n"
      "Examples:\n"
      "  cnnviz upconv train --model models/tinycnn.pt --layer conv5 --dataset dataset/concepts --out conv5.decoder.pt\n"
      "  cnnviz upconv train ... --epochs 40 --resume      # train on to 40 epochs\n"
      "  cnnviz invert --model models/tinycnn.pt --image photo.png --decoder conv5.decoder.pt");
  return [options, &global, command]() {
    if (command->parsed()) RunUpconvTrain(*options, global);
  };
}

}  // namespace cnnviz::app
