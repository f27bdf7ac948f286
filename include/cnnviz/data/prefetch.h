// Overlaps data loading with compute: decodes the next batches on background threads while the caller
// works on the current one. (total, batch size, decode(begin, end), batches in flight) => batches in
// order. With `ahead` batches in flight, `ahead` threads decode at once: one suffices next to a CPU
// forward pass, a GPU's needs several.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <future>

namespace cnnviz {

template <typename Batch>
class Prefetcher {
 public:
  using Decode = std::function<Batch(size_t begin, size_t end)>;
  Prefetcher(size_t total, size_t batch, Decode decode, size_t ahead = 1)
      : total_(total), batch_(std::max<size_t>(1, batch)), ahead_(std::max<size_t>(1, ahead)), decode_(std::move(decode)) {
    Launch();
  }
  ~Prefetcher() {
    for (auto& pending : pending_) {
      if (pending.valid()) pending.wait();
    }
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // False when every batch has been returned. Rethrows what decode threw.
  bool Next(Batch* batch) {
    if (pending_.empty()) return false;
    std::future<Batch> next = std::move(pending_.front());
    pending_.pop_front();
    *batch = next.get();  // then the next decode starts: at most `ahead` threads decode at any time
    Launch();
    return true;
  }

 private:
  void Launch() {
    while (pending_.size() < ahead_ && next_ < total_) {
      const size_t begin = next_, end = std::min(total_, next_ + batch_);
      next_ = end;
      pending_.push_back(std::async(std::launch::async, [this, begin, end] { return decode_(begin, end); }));
    }
  }

  size_t total_, batch_, ahead_, next_ = 0;
  Decode decode_;
  std::deque<std::future<Batch>> pending_;
};

}  // namespace cnnviz
