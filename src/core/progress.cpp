#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace acg2vec {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<long long>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

progress_bar::progress_bar(std::string label, std::uint64_t total, std::FILE* out)
    : label_(std::move(label)),
      total_(total),
      out_(out),
      tty_(out != nullptr && ::isatty(::fileno(out)) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

progress_bar::~progress_bar() { finish(); }

std::uint64_t progress_bar::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

void progress_bar::advance(std::uint64_t n) {
  std::lock_guard lock(mutex_);
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  // Redraw at most 10 times a second on a TTY and every 5 s in logs.
  auto interval = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (now - last_draw_ >= interval) {
    last_draw_ = now;
    draw(false);
  }
}

void progress_bar::finish() {
  std::lock_guard lock(mutex_);
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void progress_bar::draw(bool final_line) {
  if (out_ == nullptr) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string counts = total_ > 0 ? fmt::format("{}/{}", done_, total_) : fmt::format("{}", done_);
  std::string eta;
  if (total_ > 0 && rate > 0 && done_ < total_) {
    eta = " ETA " + format_duration(static_cast<double>(total_ - done_) / rate);
  }
  std::string tail = fmt::format("{} {:.1f}/s {}{}", counts, rate, format_duration(elapsed), eta);
  if (tty_) {
    std::string bar;
    if (total_ > 0) {
      constexpr int width = 30;
      int filled = static_cast<int>(width * std::min(1.0, static_cast<double>(done_) / total_));
      bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    }
    fmt::print(out_, "\r\033[2K{} {}{}", label_, bar, tail);
    if (final_line) fmt::print(out_, "\n");
  } else {
    fmt::print(out_, "{}: {}{}\n", label_, tail, final_line ? " (done)" : "");
  }
  std::fflush(out_);
}

}  // namespace acg2vec
