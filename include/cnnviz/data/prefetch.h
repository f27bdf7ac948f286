// Overlaps data loading with compute: decodes batch i+1 on a background thread while the caller works
// on batch i. (total, batch size, decode(begin, end)) => batches in order.
#pragma once

#include <algorithm>
#include <functional>
#include <future>

namespace cnnviz {

template <typename Batch>
class Prefetcher {
 public:
  using Decode = std::function<Batch(size_t begin, size_t end)>;
  Prefetcher(size_t total, size_t batch, Decode decode)
      : total_(total), batch_(std::max<size_t>(1, batch)), decode_(std::move(decode)) {
    Launch();
  }
  ~Prefetcher() {
    if (pending_.valid()) pending_.wait();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // False when every batch has been returned.
  bool Next(Batch* batch) {
    if (!pending_.valid()) return false;
    *batch = pending_.get();
    Launch();
    return true;
  }

 private:
  void Launch() {
    if (next_ >= total_) return;
    const size_t begin = next_, end = std::min(total_, next_ + batch_);
    next_ = end;
    pending_ = std::async(std::launch::async, [this, begin, end] { return decode_(begin, end); });
  }

  size_t total_, batch_, next_ = 0;
  Decode decode_;
  std::future<Batch> pending_;
};

}  // namespace cnnviz
