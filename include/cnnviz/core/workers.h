// Worker threads for independent CPU work, each with one intra-op thread: on a few cores, independent
// pieces of work (the sub-batches of activation maximization) use the cores better than intra-op
// parallelism inside small tensor ops does.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>

namespace c10 {
class ThreadPool;
}

namespace cnnviz {

class Workers {
 public:
  // Starts `count` threads with one intra-op (OpenMP) thread each; the caller's setting is kept.
  explicit Workers(int64_t count);
  // Runs every task posted so far to its end (see Drain), then joins the threads.
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  int64_t size() const { return count_; }
  // Runs task(0..tasks-1) on the workers and waits for all; rethrows the first exception a task threw.
  void Run(int64_t tasks, const std::function<void(int64_t)>& task);
  // Queues `task` and returns at once: with one worker, a stage of a pipeline that runs beside the
  // caller (tasks run in the order posted).
  void Post(std::function<void()> task);
  // Waits for every task posted so far; rethrows the first exception one threw (once).
  void Wait();
  // Waits until at most `most` posted tasks are unfinished (a pipeline stage `most` tasks deep);
  // rethrows as Wait does.
  void WaitUntilPending(int64_t most);
  // Waits for every task posted so far and forgets any failure: for error paths, where the first
  // exception is already on its way.
  void Drain() noexcept;

 private:
  int64_t count_;
  std::unique_ptr<c10::ThreadPool> pool_;
  std::mutex mutex_;
  std::condition_variable finished_;
  int64_t pending_ = 0;  // posted and not finished, under mutex_
  std::exception_ptr error_;
};

// Drains `workers` when it goes out of scope. Declare it after the last local that posted tasks read, so
// that when an exception unwinds the caller's frame the tasks finish before anything they use is
// destroyed.
class DrainOnExit {
 public:
  explicit DrainOnExit(Workers& workers) : workers_(workers) {}
  ~DrainOnExit() { workers_.Drain(); }
  DrainOnExit(const DrainOnExit&) = delete;
  DrainOnExit& operator=(const DrainOnExit&) = delete;

 private:
  Workers& workers_;
};

}  // namespace cnnviz
