// Inversion on generated dataset images. Regularized inversion: PSNR floors of the default mode, shallow
// layers reconstruct closely and deeper ones less so, --paper keeps the paper's results. UpconvNet decoders
// (Dosovitskiy & Brox): a briefly trained decoder beats the mean image on held-out images with every
// epoch's validation loss recorded, an untrained one is flagged as not better, files round-trip (format 1
// files still load), resume continues, and decoders refuse models and layers they were not made for.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "cnnviz/io/image.h"
#include "cnnviz/io/image_sources.h"
#include "cnnviz/methods/network_inversion.h"
#include "cnnviz/methods/upconv_decoder.h"
#include "test_util.h"

namespace cnnviz {
namespace {
namespace fs = std::filesystem;

double Psnr(const at::Tensor& a, const at::Tensor& b) {
  return 10.0 * std::log10(1.0 / (a - b).pow(2).mean().item<double>());
}

// Default mode on generated concept images (high-contrast textured shapes). Over the first 20 images of
// the concept fixture the mean PSNR is 38.5 dB at conv1 and 19.6 dB at conv2 (README.md's table); the
// first three, used here, are harder at conv2: measured 38.0, 31.3, 39.3 dB at conv1 and 18.7, 18.7,
// 16.1 dB (mean 17.8) at conv2. Floors: conv1 >= 25 dB on every image, conv2 >= 17.3 dB on average, and far
// above the paper's settings (conv2 of the first image: 11.3 dB).
TEST(InversionOnGeneratedImages, DefaultModeReachesThePsnrFloors) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  InversionOptions options;
  options.layers = {"conv1", "conv2"};
  double conv2 = 0;
  for (const char* name : {"concepts/images/synth/000001.jpg", "concepts/images/synth/000002.jpg",
                           "concepts/images/synth/000003.jpg"}) {
    const InversionResult result = NetworkInversion(probe).Run(ReadImage(test::Fixture(name)), options);
    EXPECT_GE(result.layers[0].psnr, 25.0) << name;
    EXPECT_LT(result.layers[0].feature_error, 0.05) << name;
    EXPECT_NEAR(result.layers[0].psnr, Psnr(result.layers[0].image, result.original), 1e-3);
    conv2 += result.layers[1].psnr / 3.0;
  }
  EXPECT_GE(conv2, 17.3);
}

// PSNR falls with depth (default mode; measured on the first image: 38.0, 18.6, 13.9, 10.3, 6.0 dB).
TEST(InversionOnGeneratedImages, ShallowLayersReconstructCloselyDeepOnesLess) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  InversionOptions options;
  options.layers = {"conv1", "conv2", "conv3", "conv4", "conv5"};
  const InversionResult result = NetworkInversion(probe).Run(ReadImage(test::Fixture("concepts/images/synth/000001.jpg")), options);
  const at::Tensor& original = result.original;
  const double flat = Psnr(original.mean({1, 2}, true).expand_as(original), original);
  EXPECT_GT(result.layers[0].psnr, flat + 15.0) << "flat image " << flat << " dB";
  for (size_t i = 1; i < 5; ++i) EXPECT_LT(result.layers[i].psnr, result.layers[i - 1].psnr) << options.layers[i];
}

// --paper is the paper's algorithm as before the default changed: conv1 of the first image gives the
// values measured then (17.1 dB; the paper's schedule is tested in inversion_test.cpp), and a flat image
// of the original's mean colour (about 12 dB) is beaten by 3 dB.
TEST(InversionOnGeneratedImages, PaperModeKeepsThePapersResult) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  InversionOptions options;
  options.paper_mode = true;
  options.layers = {"conv1"};
  const InversionResult result = NetworkInversion(probe).Run(ReadImage(test::Fixture("concepts/images/synth/000001.jpg")), options);
  const at::Tensor& original = result.original;
  const double flat = Psnr(original.mean({1, 2}, true).expand_as(original), original);
  EXPECT_NEAR(result.layers[0].psnr, 17.1303, 0.01);
  EXPECT_NEAR(result.layers[0].feature_error, 0.34226, 1e-3);
  EXPECT_NEAR(result.layers[0].learning_rate, 0.045342, 1e-4);
  EXPECT_GT(result.layers[0].psnr, flat + 3.0);
  EXPECT_EQ(result.layers[0].iterations, 400);
}

class Decoders : public ::testing::Test {
 protected:
  Decoders()
      : probe_(test::LoadFixtureModel("tinycnn_script.pt", 96)),
        images_(OpenImageDataset(test::Fixture("concepts"))),
        folder_(fs::temp_directory_path() / ("cnnviz_upconv_" + std::to_string(::getpid()) + "_" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    fs::create_directories(folder_);
  }
  ~Decoders() override { fs::remove_all(folder_); }

  DecoderTrainOptions Options(const std::string& layer, int64_t epochs) const {
    DecoderTrainOptions options;
    options.layer = layer;
    options.out = (folder_ / (layer + ".pt")).string();
    options.epochs = epochs;
    options.batch = 16;
    options.val_fraction = 0.2;
    options.learning_rate = 2e-3;
    return options;
  }

  Probe probe_;
  std::unique_ptr<ImageSource> images_;
  fs::path folder_;
};

// 60 generated images, 48 to train on, 12 held out; 3 short epochs of conv2's features (measured:
// validation loss 24%, 31% and 45% below the mean image's after epochs 1-3).
TEST_F(Decoders, BriefTrainingBeatsTheMeanImageOnHeldOutImages) {
  const DecoderTrainResult result = TrainDecoder(probe_, *images_, "concepts", Options("conv2", 3));
  const DecoderInfo& info = result.decoder->info();
  EXPECT_EQ(info.train_images, 48);
  EXPECT_EQ(info.val_images, 12);
  ASSERT_EQ(info.val_loss.size(), 3u);
  ASSERT_EQ(info.train_loss.size(), 3u);
  for (double loss : info.val_loss) EXPECT_TRUE(loss > 0 && std::isfinite(loss));
  EXPECT_NE(info.val_loss.front(), info.val_loss.back());
  EXPECT_TRUE(result.features_cached);
  EXPECT_LT(info.val_loss.back(), 0.8 * info.mean_image_val_loss)
      << "decoder " << info.val_loss.back() << " vs mean image " << info.mean_image_val_loss;
  EXPECT_TRUE(info.beats_mean_image);
  EXPECT_EQ(info.format_version, 2);
  EXPECT_EQ(result.trained_images, 3 * 48);
  EXPECT_NEAR(result.images_per_second, result.trained_images / result.train_seconds, 1e-6);
  // The file records the curve and the flag.
  const std::unique_ptr<UpconvDecoder> loaded = UpconvDecoder::Load(Options("conv2", 3).out, c10::Device(c10::kCPU));
  EXPECT_EQ(loaded->info().val_loss, info.val_loss);
  EXPECT_TRUE(loaded->info().beats_mean_image);
  EXPECT_LT(info.train_loss.back(), info.train_loss.front());
  EXPECT_EQ(info.feature_shape, (std::vector<int64_t>{probe_.Find("conv2").shape.begin() + 1, probe_.Find("conv2").shape.end()}));
}

// A decoder that cannot learn (learning rate 1e-12) stays the mean image: no better than the baseline,
// which the flag says (and training warns). With a tiny memory budget, micro-batches give the same
// gradients as whole batches.
TEST_F(Decoders, NotBetterThanTheMeanImageIsFlagged) {
  DecoderTrainOptions options = Options("conv3", 2);
  options.learning_rate = 1e-12;
  const DecoderTrainResult result = TrainDecoder(probe_, *images_, "concepts", options);
  const DecoderInfo& info = result.decoder->info();
  ASSERT_EQ(info.val_loss.size(), 2u);
  EXPECT_NEAR(info.val_loss.back(), info.mean_image_val_loss, 1e-3 * info.mean_image_val_loss);
  EXPECT_FALSE(info.beats_mean_image);

  options = Options("conv3", 1);
  const DecoderTrainResult whole = TrainDecoder(probe_, *images_, "concepts", options);
  options.out = (folder_ / "micro.pt").string();
  options.cache_mb = 1;
  const DecoderTrainResult micro = TrainDecoder(probe_, *images_, "concepts", options);
  EXPECT_EQ(whole.micro_batch, 16);
  EXPECT_LT(micro.micro_batch, 16);
  EXPECT_FALSE(micro.features_cached);
  EXPECT_NEAR(micro.decoder->info().val_loss[0], whole.decoder->info().val_loss[0], 1e-4 * whole.decoder->info().val_loss[0]);
}

TEST_F(Decoders, FilesRoundTripAndResumeContinues) {
  DecoderTrainOptions options = Options("conv4", 1);
  const DecoderTrainResult first = TrainDecoder(probe_, *images_, "concepts", options);
  std::unique_ptr<UpconvDecoder> loaded = UpconvDecoder::Load(options.out, c10::Device(c10::kCPU));
  const at::Tensor features = at::rand({2, probe_.Find("conv4").shape[1], probe_.Find("conv4").shape[2],
                                        probe_.Find("conv4").shape[3]});
  {
    at::NoGradGuard no_grad;
    const at::Tensor decoded = loaded->Decode(features);
    EXPECT_EQ(decoded.sizes(), (std::vector<int64_t>{2, 3, 96, 96}));
    EXPECT_TRUE(decoded.allclose(first.decoder->Decode(features), 1e-6, 1e-6));
  }
  EXPECT_EQ(loaded->info().epochs_done, 1);
  EXPECT_NO_THROW(loaded->CheckCompatible(probe_));

  options.epochs = 2;
  options.resume = true;
  const DecoderTrainResult resumed = TrainDecoder(probe_, *images_, "concepts", options);
  EXPECT_EQ(resumed.first_epoch, 2);
  EXPECT_EQ(resumed.decoder->info().epochs_done, 2);
  EXPECT_EQ(resumed.decoder->info().val_loss.size(), 2u);
  EXPECT_DOUBLE_EQ(resumed.decoder->info().val_loss[0], first.decoder->info().val_loss[0]);

  // Resuming with another layer is refused.
  options.layer = "conv3";
  EXPECT_THROW(TrainDecoder(probe_, *images_, "concepts", options), InputError);
}

TEST_F(Decoders, RefusesOtherModelsSizesAndNonDecoders) {
  const DecoderTrainOptions options = Options("conv5", 1);
  TrainDecoder(probe_, *images_, "concepts", options);
  std::unique_ptr<UpconvDecoder> decoder = UpconvDecoder::Load(options.out, c10::Device(c10::kCPU));
  Probe other(test::LoadFixtureModel("resnet18_script.pt", 96));
  try {
    decoder->CheckCompatible(other);
    FAIL() << "a decoder for tinycnn accepted resnet18";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("conv5"), std::string::npos) << e.what();
  }
  Probe smaller(test::LoadFixtureModel("tinycnn_script.pt", 64));
  EXPECT_THROW(decoder->CheckCompatible(smaller), InputError);
  EXPECT_THROW(UpconvDecoder::Load(test::Fixture("tinycnn_script.pt"), c10::Device(c10::kCPU)), InputError);
  EXPECT_THROW(UpconvDecoder::Load(test::Fixture("garbage.pt"), c10::Device(c10::kCPU)), InputError);
  EXPECT_THROW(UpconvDecoder::Load((folder_ / "missing.pt").string(), c10::Device(c10::kCPU)), InputError);
}

TEST_F(Decoders, BadOptionsAndTooFewImages) {
  DecoderTrainOptions options = Options("conv2", 1);
  options.val_fraction = 1.0;
  EXPECT_THROW(TrainDecoder(probe_, *images_, "concepts", options), UsageError);
  options = Options("conv2", 1);
  options.max_images = 1;
  EXPECT_THROW(TrainDecoder(probe_, *images_, "concepts", options), InputError);
  options = Options("nope", 1);
  EXPECT_THROW(TrainDecoder(probe_, *images_, "concepts", options), UsageError);
}

}  // namespace
}  // namespace cnnviz
