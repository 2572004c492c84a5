#include "core/cpu_turns.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace acg2vec {
namespace {

// One per process, like the CPU it shares out.
struct turns {
  std::atomic<bool> enabled{false};
  std::mutex mutex;
  std::condition_variable changed;
  int inputs = 0;          // input steps running
  std::atomic<int> pending{0};  // input steps running or waiting for their turn
  int computes_waiting = 0;
  bool computing = false;
};

turns& the_turns() {
  static auto* t = new turns();  // never destroyed: threads may still take turns during exit
  return *t;
}

constexpr std::chrono::milliseconds max_input_wait{250};

thread_local int depth = 0;  // turns this thread holds (input or compute)

}  // namespace

void set_cpu_turns(bool enabled) noexcept { the_turns().enabled.store(enabled); }
bool cpu_turns_enabled() noexcept { return the_turns().enabled.load(); }
int input_steps_pending() noexcept { return the_turns().pending.load(std::memory_order_relaxed); }

input_turn::input_turn() {
  auto& t = the_turns();
  if (depth > 0 || !t.enabled.load(std::memory_order_relaxed)) return;
  t.pending.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock lock(t.mutex);
  // A forward that is running or waiting goes first, for a while: past max_input_wait (a large
  // model's batch, an upscale) the step shares the cores as it would without turns, so a request
  // that needs no model never waits for a long compute task.
  t.changed.wait_for(lock, max_input_wait, [&] { return !t.computing && t.computes_waiting == 0; });
  ++t.inputs;
  held_ = true;
  ++depth;
}

input_turn::~input_turn() {
  if (!held_) return;
  --depth;
  auto& t = the_turns();
  t.pending.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(t.mutex);
  if (--t.inputs == 0) t.changed.notify_all();
}

compute_turn::compute_turn(std::chrono::microseconds max_wait) {
  auto& t = the_turns();
  if (depth > 0 || !t.enabled.load(std::memory_order_relaxed)) return;
  std::unique_lock lock(t.mutex);
  ++t.computes_waiting;
  t.changed.wait_for(lock, max_wait, [&] { return t.inputs == 0; });
  --t.computes_waiting;
  t.computing = true;
  held_ = true;
  ++depth;
}

compute_turn::~compute_turn() {
  if (!held_) return;
  --depth;
  auto& t = the_turns();
  {
    std::lock_guard lock(t.mutex);
    t.computing = false;
  }
  t.changed.notify_all();
}

}  // namespace acg2vec
