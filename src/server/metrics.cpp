#include "server/metrics.h"

#include <fmt/format.h>

namespace acg2vec::server {

void metrics::histogram::add(double v) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) ++buckets[i];
  }
  ++count;
  sum += v;
}

void metrics::observe_request(const std::string& route, const std::string& method, int status, double seconds) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, method, status}];
  latency_[route].add(seconds);
}

void metrics::observe_model(const std::string& model, std::size_t batch, double seconds) {
  std::lock_guard lock(mutex_);
  model_latency_[model].add(seconds);
  model_items_[model] += batch;
}

namespace {
// Label values must escape backslash, quote and newline.
std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
}  // namespace

std::string metrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out += "# HELP acg2vec_http_requests_total HTTP requests by route, method and status.\n";
  out += "# TYPE acg2vec_http_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const auto& [route, method, status] = key;
    out += fmt::format("acg2vec_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}\n", esc(route),
                       esc(method), status, n);
  }
  auto emit = [&out](const std::string& name, const std::string& label, const std::map<std::string, histogram>& m) {
    for (const auto& [key, h] : m) {
      for (std::size_t i = 0; i < bounds_.size(); ++i) {
        out += fmt::format("{}_bucket{{{}=\"{}\",le=\"{}\"}} {}\n", name, label, esc(key), bounds_[i], h.buckets[i]);
      }
      out += fmt::format("{}_bucket{{{}=\"{}\",le=\"+Inf\"}} {}\n", name, label, esc(key), h.count);
      out += fmt::format("{}_sum{{{}=\"{}\"}} {}\n", name, label, esc(key), h.sum);
      out += fmt::format("{}_count{{{}=\"{}\"}} {}\n", name, label, esc(key), h.count);
    }
  };
  out += "# HELP acg2vec_http_request_duration_seconds Request latency by route.\n";
  out += "# TYPE acg2vec_http_request_duration_seconds histogram\n";
  emit("acg2vec_http_request_duration_seconds", "route", latency_);
  out += "# HELP acg2vec_model_forward_seconds Forward-pass latency by model.\n";
  out += "# TYPE acg2vec_model_forward_seconds histogram\n";
  emit("acg2vec_model_forward_seconds", "model", model_latency_);
  out += "# HELP acg2vec_model_inputs_total Inputs processed by model.\n";
  out += "# TYPE acg2vec_model_inputs_total counter\n";
  for (const auto& [model, n] : model_items_) {
    out += fmt::format("acg2vec_model_inputs_total{{model=\"{}\"}} {}\n", esc(model), n);
  }
  return out;
}

}  // namespace acg2vec::server