// Inversion on generated dataset images. Regularized inversion: shallow layers reconstruct closely, deeper
// ones less so. UpconvNet decoders (Dosovitskiy & Brox): a briefly trained decoder beats the mean image on
// held-out images, files round-trip, resume continues, and decoders refuse models and layers they were
// not made for.
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

// Two generated concept images (high-contrast textured shapes). A flat image of the original's mean colour
// (what a layer keeping only the average would give) scores about 12 dB; conv1's reconstruction must beat it
// by 3 dB (measured: +5.4 dB at the default 400 steps), and PSNR must fall with depth on average
// (measured on the first image: 17.1, 11.3, 8.4, 7.8, 7.6 dB for conv1..conv5).
TEST(InversionOnGeneratedImages, ShallowLayersReconstructCloselyDeepOnesLess) {
  Probe probe(test::LoadFixtureModel("tinycnn_script.pt", 96));
  InversionOptions options;
  options.layers = {"conv1", "conv2", "conv3", "conv4", "conv5"};
  std::vector<double> mean_psnr(5, 0.0);
  for (const char* name : {"concepts/images/synth/000001.jpg", "concepts/images/synth/000002.jpg"}) {
    const at::Tensor image = ReadImage(test::Fixture(name));
    const InversionResult result = NetworkInversion(probe).Run(image, options);
    const at::Tensor& original = result.original;
    const double flat = Psnr(original.mean({1, 2}, true).expand_as(original), original);
    EXPECT_GT(result.layers[0].psnr, flat + 3.0) << name << ": flat image " << flat << " dB";
    EXPECT_NEAR(result.layers[0].psnr, Psnr(result.layers[0].image, original), 1e-3);
    for (size_t i = 0; i < 5; ++i) mean_psnr[i] += result.layers[i].psnr / 2.0;
  }
  EXPECT_GT(mean_psnr[0], mean_psnr[2]);
  EXPECT_GT(mean_psnr[2], mean_psnr[4]);
  EXPECT_GT(mean_psnr[0] + mean_psnr[1], mean_psnr[3] + mean_psnr[4] + 2.0);
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

// 60 generated images, 48 to train on, 12 held out; 6 short epochs of conv2's features.
TEST_F(Decoders, BriefTrainingBeatsTheMeanImageOnHeldOutImages) {
  const DecoderTrainResult result = TrainDecoder(probe_, *images_, "concepts", Options("conv2", 6));
  const DecoderInfo& info = result.decoder->info();
  EXPECT_EQ(info.train_images, 48);
  EXPECT_EQ(info.val_images, 12);
  ASSERT_EQ(info.val_loss.size(), 6u);
  EXPECT_TRUE(result.features_cached);
  EXPECT_LT(info.val_loss.back(), 0.8 * info.mean_image_val_loss)
      << "decoder " << info.val_loss.back() << " vs mean image " << info.mean_image_val_loss;
  EXPECT_LT(info.train_loss.back(), info.train_loss.front());
  EXPECT_EQ(info.feature_shape, (std::vector<int64_t>{probe_.Find("conv2").shape.begin() + 1, probe_.Find("conv2").shape.end()}));
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
