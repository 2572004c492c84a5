// Turn taking between forward passes and input steps (core/cpu_turns.h), and the batcher's wait
// for companions while input steps are under way. The waits asserted are what must NOT happen
// within 100 ms; the timeouts of 60 s only guard against hangs.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "core/cpu_turns.h"
#include "models/batcher.h"

namespace acg2vec {
namespace {

using namespace std::chrono_literals;

// Turns are process-wide: each test switches them on and back off.
struct turns_on {
  turns_on() { set_cpu_turns(true); }
  ~turns_on() { set_cpu_turns(false); }
};

// Runs f on a new thread; the future says when f has got past its turn.
template <class F>
std::future<void> on_thread(F f) {
  return std::async(std::launch::async, std::move(f));
}

TEST(CpuTurns, InputStepsWaitWhileAForwardRunsAndOnlyThen) {
  turns_on on;
  std::promise<void> release;
  std::atomic<bool> computing{false};
  auto forward = on_thread([&] {
    compute_turn turn;
    computing = true;
    release.get_future().wait();
  });
  while (!computing) std::this_thread::sleep_for(1ms);
  std::atomic<bool> entered{false};
  auto input = on_thread([&] {
    input_turn turn;
    entered = true;
  });
  EXPECT_EQ(input.wait_for(100ms), std::future_status::timeout);
  EXPECT_FALSE(entered);
  EXPECT_EQ(input_steps_pending(), 1);  // waiting counts as pending
  release.set_value();
  ASSERT_EQ(input.wait_for(60s), std::future_status::ready);
  EXPECT_TRUE(entered);
  forward.get();
  EXPECT_EQ(input_steps_pending(), 0);
}

TEST(CpuTurns, AnInputStepWaitsForALongComputeTaskOnlyForAWhile) {
  turns_on on;
  std::promise<void> release;
  std::atomic<bool> computing{false};
  auto upscale = on_thread([&] {  // a compute task of minutes
    compute_turn turn;
    computing = true;
    release.get_future().wait();
  });
  while (!computing) std::this_thread::sleep_for(1ms);
  auto input = on_thread([] { input_turn turn; });
  EXPECT_EQ(input.wait_for(60s), std::future_status::ready);  // 250 ms, then it shares the cores
  release.set_value();
  upscale.get();
}

TEST(CpuTurns, AForwardWaitsForRunningInputStepsUpToItsLimit) {
  turns_on on;
  std::promise<void> release;
  std::atomic<bool> holding{false};
  auto input = on_thread([&] {
    input_turn turn;
    holding = true;
    release.get_future().wait();
  });
  while (!holding) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(input_steps_pending(), 1);
  // With a long limit the forward waits for the step...
  auto patient = on_thread([] { compute_turn turn(std::chrono::seconds(60)); });
  EXPECT_EQ(patient.wait_for(100ms), std::future_status::timeout);
  release.set_value();
  ASSERT_EQ(patient.wait_for(60s), std::future_status::ready);
  input.get();
  // ...and with a short one it goes ahead while a step still runs (a long decode overlaps).
  std::promise<void> release2;
  std::atomic<bool> holding2{false};
  auto long_input = on_thread([&] {
    input_turn turn;
    holding2 = true;
    release2.get_future().wait();
  });
  while (!holding2) std::this_thread::sleep_for(1ms);
  auto hasty = on_thread([] { compute_turn turn(10ms); });
  EXPECT_EQ(hasty.wait_for(60s), std::future_status::ready);
  release2.set_value();
  long_input.get();
}

TEST(CpuTurns, NestedTurnsOnOneThreadAndDisabledTurnsNeverWait) {
  {
    turns_on on;
    auto nested = on_thread([] {
      compute_turn outer;
      input_turn inner;  // e.g. a decode inside a compute task
      compute_turn again;
    });
    ASSERT_EQ(nested.wait_for(60s), std::future_status::ready);
    auto nested_inputs = on_thread([] {
      input_turn outer;
      input_turn inner;  // a signature computed inside an ingest step
    });
    ASSERT_EQ(nested_inputs.wait_for(60s), std::future_status::ready);
  }
  // Off: an input step runs beside a forward.
  std::promise<void> release;
  std::atomic<bool> computing{false};
  auto forward = on_thread([&] {
    compute_turn turn;
    computing = true;
    release.get_future().wait();
  });
  while (!computing) std::this_thread::sleep_for(1ms);
  auto input = on_thread([] { input_turn turn; });
  EXPECT_EQ(input.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(input_steps_pending(), 0);
  release.set_value();
  forward.get();
}

// After a forward of 300 ms, a request that arrives while another thread's input step is under
// way waits for that thread's request (at most one forward's time) instead of running alone.
TEST(CpuTurns, BatcherWaitsForCompanionsWhileInputStepsAreUnderWay) {
  turns_on on;
  std::mutex mutex;
  std::vector<std::int64_t> batch_rows;
  models::batcher b(
      [&](const at::Tensor& x) {
        {
          std::lock_guard lock(mutex);
          batch_rows.push_back(x.size(0));
        }
        std::this_thread::sleep_for(300ms);
        return std::vector<at::Tensor>{x * 2};
      },
      8, 1ms);
  ASSERT_EQ(b.submit(at::ones({1, 2})).wait_for(60s), std::future_status::ready);  // sets the forward time
  std::promise<void> decoded;
  auto other = on_thread([&] {
    std::future<std::vector<at::Tensor>> mine;
    {
      input_turn decoding;  // this thread is still decoding its image
      decoded.get_future().wait();
    }
    mine = b.submit(at::ones({1, 2}));
    ASSERT_EQ(mine.wait_for(60s), std::future_status::ready);
  });
  while (input_steps_pending() == 0) std::this_thread::sleep_for(1ms);
  auto first = b.submit(at::ones({1, 2}));
  std::this_thread::sleep_for(50ms);
  decoded.set_value();
  ASSERT_EQ(first.wait_for(60s), std::future_status::ready);
  other.get();
  std::lock_guard lock(mutex);
  ASSERT_EQ(batch_rows.size(), 2U);
  EXPECT_EQ(batch_rows[1], 2);  // both requests in one pass
}

}  // namespace
}  // namespace acg2vec
