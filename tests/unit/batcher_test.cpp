// The dynamic batcher with a fake model (no network): arrival order across batches, every
// request's rows returned to it, and a request overtaken by nobody. Timeouts are generous and
// only guard against hangs; nothing here asserts a duration.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "models/batcher.h"

namespace acg2vec {
namespace {

using namespace std::chrono_literals;

// Request i is a [rows, width] tensor filled with i; the fake model returns input * 2 and logs
// which requests each forward pass held.
struct fake_model {
  std::mutex mutex;
  std::vector<std::vector<std::int64_t>> batches;  // ids, in pass order
  std::vector<std::int64_t> widths;
  std::vector<std::int64_t> rows;
  std::int64_t last_taken = -1;
  std::chrono::microseconds work{500};

  std::vector<at::Tensor> forward(const at::Tensor& b) {
    {
      std::lock_guard lock(mutex);
      std::vector<std::int64_t> ids;
      auto col = b.select(1, 0).to(at::kLong).contiguous();
      for (std::int64_t r = 0; r < col.size(0); ++r) {
        std::int64_t id = col[r].item<std::int64_t>();
        if (ids.empty() || ids.back() != id) ids.push_back(id);
      }
      last_taken = std::max(last_taken, ids.back());
      batches.push_back(std::move(ids));
      widths.push_back(b.size(1));
      rows.push_back(b.size(0));
    }
    std::this_thread::sleep_for(work);
    return {b * 2, b.sum(1)};
  }
};

TEST(Batcher, ArrivalOrderAndBoundedWaitUnderManySubmitters) {
  constexpr int kThreads = 32;
  constexpr int kPerThread = 25;
  constexpr int kMaxBatch = 6;
  fake_model model;
  models::batcher b([&](const at::Tensor& x) { return model.forward(x); }, kMaxBatch, 2ms);

  struct submitted {
    std::int64_t rows = 0, width = 0;
    std::size_t passes_started = 0;  // forward passes begun when it was queued
    std::int64_t last_taken = -1;    // newest request id already in a pass then
    std::future<std::vector<at::Tensor>> future;
  };
  std::vector<submitted> subs(kThreads * kPerThread);
  std::mutex order;  // held across id assignment and submit(): queue order == id order
  std::int64_t next_id = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919U + 1U);
      for (int k = 0; k < kPerThread; ++k) {
        const std::int64_t rows = 1 + static_cast<std::int64_t>(rng() % 3);
        // Mostly one row shape, sometimes another: a batch must then end, not skip ahead.
        const std::int64_t width = rng() % 5 == 0 ? 3 : 2;
        {
          std::lock_guard lock(order);
          const std::int64_t id = next_id++;
          auto& s = subs[static_cast<std::size_t>(id)];
          s.rows = rows;
          s.width = width;
          {
            std::lock_guard m(model.mutex);
            s.passes_started = model.batches.size();
            s.last_taken = model.last_taken;
          }
          s.future = b.submit(at::full({rows, width}, static_cast<double>(id), at::kFloat));
        }
        if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
      }
    });
  }
  for (auto& th : threads) th.join();

  std::vector<std::size_t> pass_of(subs.size());
  for (std::size_t id = 0; id < subs.size(); ++id) {
    auto& s = subs[id];
    ASSERT_EQ(s.future.wait_for(120s), std::future_status::ready) << "request " << id << " never served";
    auto out = s.future.get();
    ASSERT_EQ(out.size(), 2U);
    ASSERT_EQ(out[0].size(0), s.rows);
    EXPECT_TRUE(at::equal(out[0], at::full({s.rows, s.width}, 2.0 * static_cast<double>(id), at::kFloat))) << id;
    EXPECT_TRUE(at::allclose(out[1], at::full({s.rows}, static_cast<double>(id * s.width), at::kFloat))) << id;
  }

  // Passes, read in order, hold every request exactly once and in arrival order.
  std::int64_t expected = 0;
  for (std::size_t p = 0; p < model.batches.size(); ++p) {
    const auto& ids = model.batches[p];
    std::int64_t rows = 0;
    for (auto id : ids) {
      ASSERT_EQ(id, expected) << "pass " << p << " is out of arrival order";
      ++expected;
      pass_of[static_cast<std::size_t>(id)] = p;
      rows += subs[static_cast<std::size_t>(id)].rows;
      EXPECT_EQ(subs[static_cast<std::size_t>(id)].width, model.widths[p]) << "shapes mixed in pass " << p;
    }
    EXPECT_EQ(rows, model.rows[p]);
    EXPECT_LE(rows, kMaxBatch) << "pass " << p << " is larger than max_batch";
  }
  EXPECT_EQ(expected, static_cast<std::int64_t>(subs.size()));

  // Bounded wait, counted in passes: a request queued behind `ahead` requests that no pass held
  // yet runs at the latest in the (ahead + 1)-th pass from then (each pass takes at least the
  // oldest request), i.e. it waits only for work that arrived before it.
  std::size_t longest = 0;
  for (std::size_t id = 0; id < subs.size(); ++id) {
    const auto& s = subs[id];
    const auto ahead = static_cast<std::size_t>(static_cast<std::int64_t>(id) - s.last_taken - 1);
    EXPECT_LE(pass_of[id], s.passes_started + ahead) << "request " << id << " was overtaken";
    longest = std::max(longest, pass_of[id] - std::min(pass_of[id], s.passes_started));
  }
  // Merging happened at all (32 submitters, max_batch 6): fewer passes than requests.
  EXPECT_LT(model.batches.size(), subs.size());
  RecordProperty("passes", static_cast<int>(model.batches.size()));
  RecordProperty("longest_wait_in_passes", static_cast<int>(longest));
}

TEST(Batcher, OversizedRequestRunsAloneAndFullBatchDoesNotWait) {
  fake_model model;
  model.work = 0us;
  // A window of an hour: only a full batch (or stopping) may end it, so finishing proves that
  // a full batch starts at once.
  models::batcher b([&](const at::Tensor& x) { return model.forward(x); }, 4, std::chrono::hours(1));
  auto big = b.submit(at::full({9, 2}, 0.0, at::kFloat));
  auto full = b.submit(at::full({4, 2}, 1.0, at::kFloat));
  ASSERT_EQ(big.wait_for(60s), std::future_status::ready);
  ASSERT_EQ(full.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(big.get()[0].size(0), 9);
  EXPECT_EQ(full.get()[0].size(0), 4);
  std::lock_guard lock(model.mutex);
  ASSERT_EQ(model.batches.size(), 2U);
  EXPECT_EQ(model.rows[0], 9);
  EXPECT_EQ(model.rows[1], 4);
}

TEST(Batcher, LoneRequestIsServedAfterItsWindowAndQueueDrainsOnShutdown) {
  fake_model model;
  std::future<std::vector<at::Tensor>> lone;
  std::future<std::vector<at::Tensor>> last;
  {
    models::batcher b([&](const at::Tensor& x) { return model.forward(x); }, 8, 5ms);
    lone = b.submit(at::full({1, 2}, 0.0, at::kFloat));
    ASSERT_EQ(lone.wait_for(60s), std::future_status::ready);
    last = b.submit(at::full({1, 2}, 1.0, at::kFloat));
  }  // destroyed with a request possibly still queued: it is run, not dropped
  ASSERT_EQ(last.wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(at::equal(last.get()[0], at::full({1, 2}, 2.0, at::kFloat)));
}

TEST(Batcher, LoneSequentialCallerIsNotKeptWaitingForCompanions) {
  fake_model model;
  model.work = 0us;
  // A window of an hour: a lone caller that waited for companions would never finish here.
  models::batcher b([&](const at::Tensor& x) { return model.forward(x); }, 8, std::chrono::hours(1));
  for (int i = 0; i < 20; ++i) {
    auto f = b.submit(at::full({1, 2}, static_cast<double>(i), at::kFloat));
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "request " << i;
    EXPECT_TRUE(at::equal(f.get()[0], at::full({1, 2}, 2.0 * i, at::kFloat)));
  }
  std::lock_guard lock(model.mutex);
  EXPECT_EQ(model.batches.size(), 20U);
}

TEST(Batcher, RecordsWaitAndForwardInTheSubmittersRequestTimings) {
  fake_model model;
  models::batcher b([&](const at::Tensor& x) { return model.forward(x); }, 8, 1ms);
  auto timings = std::make_shared<request_timings>();
  {
    request_timing_scope scope(timings);
    auto f = b.submit(at::full({1, 2}, 1.0, at::kFloat));
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready);
  }
  std::vector<std::string> names;
  for (const auto& [name, ms] : timings->spans_ms()) {
    names.push_back(name);
    EXPECT_GE(ms, 0.0) << name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"batch_wait", "compute_wait", "forward"}));
  // The fake model sleeps 500 us per pass.
  EXPECT_GE(timings->spans_ms().back().second, 0.5);
  EXPECT_NE(timings->header().find("forward;dur="), std::string::npos);
}

}  // namespace
}  // namespace acg2vec
