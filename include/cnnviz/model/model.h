// A loaded TorchScript model (scripted or traced) with its input specification.
//
// Loading puts the module in eval mode and turns off requires_grad on every parameter: cnnviz only ever
// differentiates with respect to inputs. The torch::jit::Module stays behind an Impl so that this header
// does not pull in torch/script.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>

#include "cnnviz/model/input_spec.h"

namespace torch::jit {
struct Module;
}

namespace cnnviz {

class Model {
 public:
  // Loads `path` onto `device` and reads its sidecar (defaults plus a warning when there is none).
  // Throws InputError (missing file, not TorchScript, malformed sidecar) or ModelError (unknown
  // operator, e.g. a file from a newer PyTorch: the message names the operator).
  static std::shared_ptr<Model> Load(const std::string& path, const c10::Device& device);
  ~Model();

  const std::string& path() const { return path_; }
  const c10::Device& device() const { return device_; }
  const InputSpec& input_spec() const { return spec_; }
  // For flag overrides (--input-size); call Check() after changing it.
  InputSpec& mutable_input_spec() { return spec_; }

  // Images [N,C,H,W] in [0,1], RGB order -> the tensor the model expects (channel order, range,
  // mean/std), on the model's device.
  at::Tensor Preprocess(const at::Tensor& images) const;
  // The inverse of Preprocess.
  at::Tensor Deprocess(const at::Tensor& input) const;
  // Values already in the model's channel order and range -> (x - mean) / std, on the model's device:
  // Preprocess without its channel reordering and range scaling.
  at::Tensor Normalize(const at::Tensor& values) const;
  // `input` in the memory layout the network's gradient passes run fastest in: channels-last on a CPU
  // (oneDNN convolutions without layout reorders, vectorized pooling; an activation-maximization step
  // is 1.08x (resnet18) to 1.16x (tinycnn) faster, a PGD step on resnet18 at batch 16 1.4x), unchanged
  // on CUDA. Values are the same; results round differently.
  at::Tensor GradientLayout(const at::Tensor& input) const;

  // module.forward(input); when forward returns a tuple (googlenet's NamedTuple), its first tensor.
  at::Tensor Forward(const at::Tensor& input) const;

  // A stable hex digest of the parameters and buffers (names, shapes, values): identifies "the same
  // model" for files made from it (decoders), whatever its path.
  std::string Fingerprint() const;

  // The underlying module, for code in src/model only.
  torch::jit::Module& module() const;

 private:
  Model() = default;
  std::string path_;
  c10::Device device_{c10::kCPU};
  InputSpec spec_;
  std::unique_ptr<torch::jit::Module> module_;
};

}  // namespace cnnviz
