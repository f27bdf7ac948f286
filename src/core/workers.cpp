#include "cnnviz/core/workers.h"

#include <ATen/Parallel.h>
#include <c10/core/thread_pool.h>

#include <atomic>
#include <thread>

namespace cnnviz {

Workers::Workers(int64_t count) : count_(count) {
  const int restore = at::get_num_threads();
  std::atomic<int64_t> ready{0};
  pool_ = std::make_unique<c10::ThreadPool>(static_cast<int>(count), -1, [&ready] {
    at::internal::lazy_init_num_threads();
    // Sets this thread's OpenMP team size, and also the process default, which is restored below once
    // every worker has taken its own.
    at::set_num_threads(1);
    ready.fetch_add(1);
  });
  while (ready.load() < count) std::this_thread::yield();
  at::set_num_threads(restore);
}

Workers::~Workers() { Drain(); }

void Workers::Drain() noexcept {
  if (!pool_) return;
  pool_->waitWorkComplete();
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = nullptr;
}

void Workers::Run(int64_t tasks, const std::function<void(int64_t)>& task) {
  for (int64_t i = 0; i < tasks; ++i) Post([&task, i] { task(i); });
  Wait();
}

void Workers::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++pending_;
  }
  pool_->run([this, task = std::move(task)] {
    std::exception_ptr failure;
    try {
      task();
    } catch (...) {
      failure = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failure && !error_) error_ = failure;
      --pending_;
    }
    finished_.notify_all();
  });
}

void Workers::WaitUntilPending(int64_t most) {
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return pending_ <= most; });
    std::swap(error, error_);
  }
  if (error) std::rethrow_exception(error);
}

void Workers::Wait() {
  pool_->waitWorkComplete();
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::swap(error, error_);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace cnnviz
