#include "cnnviz/model/model.h"

#include <cstdio>

#include <torch/script.h>
#include <torch/version.h>

#include <filesystem>
#include <regex>

#include "cnnviz/core/error.h"
#include "cnnviz/core/logging.h"
#include "cnnviz/core/version.h"
#include "src/model/ivalue_util.h"
#include "src/model/zip_check.h"

namespace cnnviz {
namespace fs = std::filesystem;

namespace {

// Maps LibTorch's load failures to one-line, actionable errors.
[[noreturn]] void ThrowLoadError(const std::string& path, const std::string& message) {
  static const std::regex kUnknownOp(R"(Unknown (?:builtin )?op(?:erator)?:? ([A-Za-z0-9_]+::[A-Za-z0-9_.]+))");
  static const std::regex kVersion(R"(version[^0-9]*([0-9]+)[^0-9]+(?:maximum supported|supports up to)[^0-9]*([0-9]+))");
  std::smatch match;
  if (std::regex_search(message, match, kUnknownOp)) {
    std::string op = match[1].str();
    while (!op.empty() && op.back() == '.') op.pop_back();
    throw ModelError("model '" + path + "' uses operator " + op + ", which LibTorch " +
                     TorchVersion() +
                     " does not know (exported by a newer PyTorch?); re-export it with an older torch "
                     "or build cnnviz against a newer LibTorch");
  }
  if (std::regex_search(message, match, kVersion)) {
    throw ModelError("model '" + path + "' has TorchScript file format version " + match[1].str() +
                     ", but LibTorch " + TorchVersion() + " reads up to version " + match[2].str() +
                     "; re-export it with an older torch or build cnnviz against a newer LibTorch");
  }
  if (message.find("PytorchStreamReader") != std::string::npos ||
      message.find("constants.pkl") != std::string::npos || message.find("archive") != std::string::npos) {
    throw InputError("'" + path + "' is not a TorchScript file (expected the output of torch.jit.save): " +
                     FirstLine(message));
  }
  throw InputError("cannot load TorchScript model '" + path + "': " + FirstLine(message));
}

}  // namespace

Model::~Model() = default;

std::shared_ptr<Model> Model::Load(const std::string& path, const c10::Device& device) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError("model file '" + path + "' does not exist");
  if (fs::is_directory(path, ec)) throw InputError("model path '" + path + "' is a directory, not a file");
  detail::VerifyZipChecksums(path);
  std::shared_ptr<Model> model(new Model());
  model->path_ = path;
  model->device_ = device;
  try {
    model->module_ = std::make_unique<torch::jit::Module>(torch::jit::load(path, device));
  } catch (const c10::Error& e) {
    ThrowLoadError(path, e.what_without_backtrace());
  } catch (const std::exception& e) {
    ThrowLoadError(path, e.what());
  }
  model->module_->eval();
  for (at::Tensor parameter : model->module_->parameters()) parameter.requires_grad_(false);
  if (!model->module_->find_method("forward")) {
    throw InputError("TorchScript model '" + path + "' has no forward method");
  }
  bool missing = false;
  model->spec_ = ReadInputSpecFor(path, &missing);
  if (missing) {
    LogWarn("no sidecar " + SidecarPathFor(path) + " next to the model: assuming " + std::to_string(model->spec_.height) +
            "x" + std::to_string(model->spec_.width) + " RGB in [0,1] with ImageNet mean/std");
  }
  return model;
}

torch::jit::Module& Model::module() const { return *module_; }

at::Tensor Model::GradientLayout(const at::Tensor& input) const {
  if (input.is_cuda() || input.dim() != 4) return input;
  return input.contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor Model::Preprocess(const at::Tensor& images) const {
  // Asynchronous when `images` is page-locked (BatchPrefetcher pins batches for a GPU); a plain copy else.
  at::Tensor x = images.to(device_, at::kFloat, /*non_blocking=*/true);
  if (spec_.channel_order == "BGR" && x.size(1) == 3) x = x.flip({1});
  x = x * (spec_.range_high - spec_.range_low) + spec_.range_low;
  auto options = x.options();
  at::Tensor mean = torch::tensor(spec_.mean, options.dtype(at::kDouble)).to(options).view({1, -1, 1, 1});
  at::Tensor std = torch::tensor(spec_.std, options.dtype(at::kDouble)).to(options).view({1, -1, 1, 1});
  return (x - mean) / std;
}

at::Tensor Model::Normalize(const at::Tensor& values) const {
  const at::Tensor x = values.to(device_, at::kFloat);
  auto options = x.options();
  at::Tensor mean = torch::tensor(spec_.mean, options.dtype(at::kDouble)).to(options).view({1, -1, 1, 1});
  at::Tensor std = torch::tensor(spec_.std, options.dtype(at::kDouble)).to(options).view({1, -1, 1, 1});
  return (x - mean) / std;
}

at::Tensor Model::Deprocess(const at::Tensor& input) const {
  auto options = input.options();
  at::Tensor mean = torch::tensor(spec_.mean, options.dtype(at::kDouble)).to(options).view({1, -1, 1, 1});
  at::Tensor std = torch::tensor(spec_.std, options.dtype(at::kDouble)).to(options).view({1, -1, 1, 1});
  at::Tensor x = (input * std + mean - spec_.range_low) / (spec_.range_high - spec_.range_low);
  if (spec_.channel_order == "BGR" && x.size(1) == 3) x = x.flip({1});
  return x;
}

std::string Model::Fingerprint() const {
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a
  auto mix = [&](const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  };
  auto add = [&](const std::string& name, const at::Tensor& value) {
    mix(name.data(), name.size());
    const at::Tensor host = value.detach().to(at::kCPU).contiguous();
    for (int64_t size : host.sizes()) mix(&size, sizeof(size));
    mix(host.data_ptr(), host.numel() * host.element_size());
  };
  for (const auto& item : module_->named_parameters(/*recurse=*/true)) add(item.name, item.value);
  for (const auto& item : module_->named_buffers(/*recurse=*/true)) add(item.name, item.value);
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

at::Tensor Model::Forward(const at::Tensor& input) const {
  return detail::FirstTensor(module_->forward({input}));
}

}  // namespace cnnviz
