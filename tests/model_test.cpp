// Loading: every kind of bad model file gets a one-line error of the documented class. Also the small
// pieces around the model: preprocessing, the gradient layout, worker threads.
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cnnviz/core/workers.h"
#include "cnnviz/data/prefetch.h"
#include "test_util.h"

namespace cnnviz {
namespace {

template <typename ErrorType>
std::string LoadError(const std::string& path) {
  try {
    Model::Load(path, c10::Device(c10::kCPU));
  } catch (const ErrorType& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "no error loading " << path;
  return "";
}

TEST(ModelTest, MissingFile) {
  EXPECT_NE(LoadError<InputError>(test::Fixture("no_such_model.pt")).find("does not exist"), std::string::npos);
}

TEST(ModelTest, NotTorchScript) {
  EXPECT_NE(LoadError<InputError>(test::Fixture("garbage.pt")).find("not a TorchScript file"), std::string::npos);
  EXPECT_NE(LoadError<InputError>(test::Fixture("state_dict.pt")).find("not a TorchScript file"),
            std::string::npos);
}

TEST(ModelTest, UnknownOperatorIsNamed) {
  const std::string message = LoadError<ModelError>(test::Fixture("future_op.pt"));
  EXPECT_NE(message.find("aten::cnnviz_future_op,"), std::string::npos) << message;
  EXPECT_NE(message.find("newer PyTorch"), std::string::npos) << message;
}

TEST(ModelTest, MalformedSidecar) {
  const std::string message = LoadError<InputError>(test::Fixture("bad_sidecar.pt"));
  EXPECT_NE(message.find("bad_sidecar.json"), std::string::npos) << message;
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
}

TEST(ModelTest, SidecarIsRead) {
  auto model = Model::Load(test::Fixture("tinycnn_script.pt"), c10::Device(c10::kCPU));
  const InputSpec& spec = model->input_spec();
  EXPECT_EQ(spec.source, test::Fixture("tinycnn_script.json"));
  EXPECT_EQ(spec.channels, 3);
  EXPECT_EQ(spec.mean.size(), 3u);
}

TEST(ModelTest, MissingSidecarGivesDefaults) {
  auto model = Model::Load(test::Fixture("frozen.pt"), c10::Device(c10::kCPU));
  EXPECT_EQ(model->input_spec().source, "defaults");
  EXPECT_EQ(model->input_spec().height, 224);
}

TEST(ModelTest, ParametersNeverRequireGradAndModuleIsInEvalMode) {
  auto model = Model::Load(test::Fixture("resnet18_script.pt"), c10::Device(c10::kCPU));
  at::Tensor input = at::randn({2, 3, 32, 32});
  EXPECT_FALSE(model->Forward(input).requires_grad());
  // Eval mode: batch statistics are not used, so one image gives the same logits alone or batched.
  EXPECT_TRUE(at::allclose(model->Forward(input.slice(0, 0, 1)), model->Forward(input).slice(0, 0, 1), 1e-4, 1e-5));
}

TEST(ModelTest, PreprocessAppliesRangeMeanAndStdAndInverts) {
  auto model = Model::Load(test::Fixture("resnet18_script.pt"), c10::Device(c10::kCPU));
  at::Tensor image = at::rand({1, 3, 8, 8});
  at::Tensor x = model->Preprocess(image);
  EXPECT_NEAR(x[0][0][0][0].item<double>(), (image[0][0][0][0].item<double>() - 0.485) / 0.229, 1e-5);
  EXPECT_TRUE(at::allclose(model->Deprocess(x), image, 1e-5, 1e-6));
}

// Channels-last on a CPU: the same values, and the network gives the same outputs up to rounding.
TEST(ModelTest, GradientLayoutKeepsValues) {
  auto model = Model::Load(test::Fixture("resnet18_script.pt"), c10::Device(c10::kCPU));
  const at::Tensor x = model->Preprocess(at::rand({2, 3, 32, 32}));
  const at::Tensor laid = model->GradientLayout(x);
  EXPECT_TRUE(laid.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(at::equal(laid, x));
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::allclose(model->Forward(laid), model->Forward(x), 1e-4, 1e-5));
  EXPECT_TRUE(at::equal(model->GradientLayout(at::ones({5})), at::ones({5})));  // not an image batch: as is
}

// Workers run every task once, on threads with one intra-op thread each, keep the caller's setting,
// and hand the first exception back to the caller.
TEST(WorkersTest, RunsTasksWithOneIntraOpThreadAndRethrows) {
  const int caller = at::get_num_threads();
  Workers workers(2);
  EXPECT_EQ(at::get_num_threads(), caller);
  std::vector<int> threads(8, 0);
  std::atomic<int> runs{0};
  workers.Run(8, [&](int64_t i) {
    threads[i] = at::get_num_threads();
    ++runs;
  });
  EXPECT_EQ(runs.load(), 8);
  for (int t : threads) EXPECT_EQ(t, 1);
  EXPECT_THROW(workers.Run(4,
                           [](int64_t i) {
                             if (i == 2) throw std::runtime_error("task 2 failed");
                           }),
               std::runtime_error);
  workers.Run(3, [&](int64_t) { ++runs; });  // still usable after a failure
  EXPECT_EQ(runs.load(), 11);
  EXPECT_EQ(at::get_num_threads(), caller);
}

// With one worker, posted tasks run in the order posted, beside the caller; Wait hands back the first
// failure once.
TEST(WorkersTest, PostedTasksRunInOrderAndWaitRethrowsOnce) {
  Workers stage(1);
  std::vector<int> order;
  for (int i = 0; i < 20; ++i) stage.Post([&order, i] { order.push_back(i); });
  stage.Wait();
  ASSERT_EQ(order.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[i], i);
  stage.Post([] { throw std::runtime_error("stage failed"); });
  stage.Post([&order] { order.push_back(20); });  // later tasks still run
  EXPECT_THROW(stage.Wait(), std::runtime_error);
  EXPECT_NO_THROW(stage.Wait());
  EXPECT_EQ(order.back(), 20);
}

// WaitUntilPending(n) returns once at most n posted tasks are unfinished: the caller of a pipeline stage
// runs ahead of it by n tasks and no more; a task's failure comes back from the next wait.
TEST(WorkersTest, WaitUntilPendingBoundsTheTasksInFlight) {
  Workers stage(1);
  std::atomic<int> finished{0};
  for (int i = 0; i < 30; ++i) {
    stage.WaitUntilPending(1);
    EXPECT_GE(finished.load(), i - 1) << i;  // the task before last has finished
    stage.Post([&finished] {
      std::this_thread::sleep_for(std::chrono::microseconds(300));
      ++finished;
    });
  }
  stage.WaitUntilPending(0);
  EXPECT_EQ(finished.load(), 30);
  stage.Post([] { throw std::runtime_error("stage failed"); });
  EXPECT_THROW(stage.WaitUntilPending(0), std::runtime_error);
  EXPECT_NO_THROW(stage.Wait());
}

// Several batches decode at once, yet come back in order, each exactly once; a decoding failure reaches
// the caller at its batch.
TEST(PrefetcherTest, BatchesInFlightComeBackInOrder) {
  for (size_t ahead : {1, 3, 8}) {
    std::atomic<int> running{0}, most{0};
    Prefetcher<std::vector<size_t>> prefetcher(
        103, 10,
        [&](size_t begin, size_t end) {
          const int now = ++running;
          most = std::max(most.load(), now);
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          std::vector<size_t> out;
          for (size_t i = begin; i < end; ++i) out.push_back(i);
          --running;
          return out;
        },
        ahead);
    std::vector<size_t> batch, seen;
    while (prefetcher.Next(&batch)) seen.insert(seen.end(), batch.begin(), batch.end());
    ASSERT_EQ(seen.size(), 103u) << ahead;
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i);
    EXPECT_LE(most.load(), static_cast<int>(ahead));
  }
  Prefetcher<int> failing(30, 10, [](size_t begin, size_t) -> int {
    if (begin == 10) throw std::runtime_error("batch 2 failed");
    return static_cast<int>(begin);
  }, 3);
  int value = -1;
  EXPECT_TRUE(failing.Next(&value));
  EXPECT_EQ(value, 0);
  EXPECT_THROW(failing.Next(&value), std::runtime_error);
}

}  // namespace
}  // namespace cnnviz
