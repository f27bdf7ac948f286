// Datasets as seen by methods: an indexed set of images, decoded on demand. The interface lives in
// cnnviz::core (no OpenCV); decoders live in cnnviz::io (see cnnviz/io/image_sources.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cnnviz {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual size_t size() const = 0;
  // A name for reports (usually the file path).
  virtual std::string Name(size_t index) const = 0;
  // Image `index` as float [3,H,W] in [0,1], RGB. Throws InputError when it cannot be decoded.
  virtual at::Tensor Load(size_t index) const = 0;
};

// A batch of decoded images resized to one size, with the indices that failed to decode.
struct ImageBatch {
  std::vector<size_t> indices;  // images in `images`, in order
  at::Tensor images;            // [B,3,H,W] in [0,1] (undefined when every image failed)
  std::vector<std::pair<size_t, std::string>> failures;  // index, one-line reason
};

// Iterates over a source in batches, decoding the next `ahead` batches on background threads (one each)
// while the caller works on the current one. Images are resized (bilinear) to height x width; with `pin`
// (for a CUDA consumer) batches land in page-locked memory, so that their copy to the GPU is fast and
// asynchronous.
class BatchPrefetcher {
 public:
  BatchPrefetcher(const ImageSource& source, size_t batch, int64_t height, int64_t width, size_t limit = 0,
                  size_t ahead = 1, bool pin = false);
  ~BatchPrefetcher();
  // False when the source is exhausted.
  bool Next(ImageBatch* batch);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cnnviz
