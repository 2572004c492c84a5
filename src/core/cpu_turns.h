#pragma once
// Forward passes and input work (decoding, preprocessing, thumbnails, signatures) take turns on
// the CPU when a forward's thread team covers every core. Each OpenMP step of a forward ends at
// a barrier, so a decoder that preempts one team thread stalls the whole team: on 2 cores with
// 16 ingest workers a MobileNetV2 pass of 6 images ran 60 ms instead of 19, and the spinning at
// the barriers burned the time the decoders were meant to use. Taking turns, a forward waits
// briefly for the input steps already running (never longer than max_wait), new input steps wait
// for the forward (at most 250 ms: past that they share the cores, as without turns), and each
// runs on every core in its turn.
//
// Input steps must not wait for a forward while they hold a turn (they are pure CPU work), and a
// turn taken while the thread already holds one is free, so nesting cannot deadlock.

#include <chrono>

namespace acg2vec {

/// @brief Enables or disables turn taking (off: both guards below do nothing). The runtime turns
/// it on when its forward team has as many threads as the machine has cores.
void set_cpu_turns(bool enabled) noexcept;
[[nodiscard]] bool cpu_turns_enabled() noexcept;
/// @brief Input steps running or waiting for their turn (0 when turn taking is off): a batcher
/// that sees some can expect more requests soon.
[[nodiscard]] int input_steps_pending() noexcept;

/// @brief Held around one CPU-heavy input step on a request or ingest thread.
class input_turn {
 public:
  input_turn();
  ~input_turn();
  input_turn(const input_turn&) = delete;
  input_turn& operator=(const input_turn&) = delete;

 private:
  bool held_ = false;
};

/// @brief Held by the compute thread around one forward pass (or other compute task).
class compute_turn {
 public:
  /// Waits until no input step runs, or max_wait has passed (a long decode then overlaps).
  explicit compute_turn(std::chrono::microseconds max_wait = std::chrono::milliseconds(5));
  ~compute_turn();
  compute_turn(const compute_turn&) = delete;
  compute_turn& operator=(const compute_turn&) = delete;

 private:
  bool held_ = false;
};

}  // namespace acg2vec
