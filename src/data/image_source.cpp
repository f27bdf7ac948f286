#include "cnnviz/data/image_source.h"

#include <ATen/ATen.h>

#include "cnnviz/core/error.h"
#include "cnnviz/data/prefetch.h"

namespace cnnviz {

struct BatchPrefetcher::Impl {
  Prefetcher<ImageBatch> prefetcher;
};

BatchPrefetcher::BatchPrefetcher(const ImageSource& source, size_t batch, int64_t height, int64_t width, size_t limit,
                                 size_t ahead, bool pin) {
  const size_t total = limit ? std::min(limit, source.size()) : source.size();
  auto decode = [&source, height, width, pin](size_t begin, size_t end) {
    ImageBatch out;
    std::vector<at::Tensor> images;
    for (size_t i = begin; i < end; ++i) {
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
    if (!images.empty()) out.images = pin ? at::stack(images).pin_memory() : at::stack(images);
    return out;
  };
  impl_.reset(new Impl{Prefetcher<ImageBatch>(total, batch, decode, ahead)});
}

BatchPrefetcher::~BatchPrefetcher() = default;

bool BatchPrefetcher::Next(ImageBatch* batch) { return impl_->prefetcher.Next(batch); }

}  // namespace cnnviz
