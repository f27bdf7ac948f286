#include "cnnviz/data/image_source.h"

#include <ATen/ATen.h>

#include <future>

#include "cnnviz/core/error.h"

namespace cnnviz {

struct BatchPrefetcher::Impl {
  const ImageSource& source;
  size_t batch, end, next = 0;
  int64_t height, width;
  std::future<ImageBatch> pending;

  ImageBatch Decode(size_t begin) const {
    ImageBatch out;
    std::vector<at::Tensor> images;
    for (size_t i = begin; i < std::min(end, begin + batch); ++i) {
      try {
        at::Tensor image = source.Load(i);
        if (image.size(1) != height || image.size(2) != width) {
          image = at::upsample_bilinear2d(image.unsqueeze(0), {height, width}, false).squeeze(0);
        }
        images.push_back(image);
        out.indices.push_back(i);
      } catch (const Error& e) {
        out.failures.emplace_back(i, e.what());
      }
    }
    if (!images.empty()) out.images = at::stack(images);
    return out;
  }

  void Launch() {
    if (next >= end) return;
    const size_t begin = next;
    next += batch;
    pending = std::async(std::launch::async, [this, begin] { return Decode(begin); });
  }
};

BatchPrefetcher::BatchPrefetcher(const ImageSource& source, size_t batch, int64_t height, int64_t width, size_t limit)
    : impl_(new Impl{source, std::max<size_t>(1, batch), limit ? std::min(limit, source.size()) : source.size(), 0,
                     height, width, {}}) {
  impl_->Launch();
}

BatchPrefetcher::~BatchPrefetcher() {
  if (impl_->pending.valid()) impl_->pending.wait();
}

bool BatchPrefetcher::Next(ImageBatch* batch) {
  if (!impl_->pending.valid()) return false;
  *batch = impl_->pending.get();
  impl_->Launch();
  return true;
}

}  // namespace cnnviz
