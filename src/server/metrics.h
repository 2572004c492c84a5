#pragma once
// Prometheus text-format metrics: request counts by route/method/status, latency histograms
// by route, and model timings. Thread-safe; rendering takes a consistent snapshot.

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace acg2vec::server {

class metrics {
 public:
  /// @brief Records one finished HTTP request.
  void observe_request(const std::string& route, const std::string& method, int status, double seconds);
  /// @brief Records one forward pass of a model (batch = number of inputs merged into it).
  void observe_model(const std::string& model, std::size_t batch, double seconds);
  /// @brief The text exposition format (version 0.0.4).
  [[nodiscard]] std::string render() const;

 private:
  static constexpr std::array<double, 12> bounds_ = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1.0,  2.5,   10.0};
  struct histogram {
    std::array<std::uint64_t, bounds_.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
    void add(double v);
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::string, histogram> latency_;
  std::map<std::string, histogram> model_latency_;
  std::map<std::string, std::uint64_t> model_items_;
};

}  // namespace acg2vec::server