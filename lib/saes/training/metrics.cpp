// Training metrics: batch statistics, window accumulation, dead features, metrics.jsonl.
#include "saes/training/metrics.h"

#include <algorithm>
#include <sstream>

#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::training {
namespace {

at::Tensor rows(const at::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

double find_value(const MetricValues& values, const std::string& key, double fallback) {
  for (const auto& [k, v] : values) {
    if (k == key) return v;
  }
  return fallback;
}

}  // namespace

namespace {

/// Reconstruction statistics of one [N, d] output against its label (w: [N] token weights).
struct Recon {
  double ev = 0, ev_legacy = 0, l2_error = 0, y_norm = 0;
};

Recon reconstruction_stats(const at::Tensor& x_hat, const at::Tensor& y, const at::Tensor& w,
                           double n) {
  Recon r;
  const at::Tensor w_col = w.unsqueeze(1);
  const at::Tensor y_mean = y.mul(w_col).sum(0).div(n);
  const at::Tensor err = x_hat.sub(y).pow(2).sum(1);
  const at::Tensor var = y.sub(y_mean).pow(2).sum(1);
  const double err_total = err.mul(w).sum().item<double>();
  const double var_total = var.mul(w).sum().item<double>();
  r.ev = var_total > 0 ? 1.0 - err_total / var_total : 0.0;
  r.ev_legacy = err.div(var.clamp_min(1e-12)).neg().add(1.0).mul(w).sum().item<double>() / n;
  r.l2_error = err.sqrt().mul(w).sum().item<double>() / n;
  r.y_norm = y.norm(2, {1}).mul(w).sum().item<double>() / n;
  return r;
}

}  // namespace

BatchStats compute_batch_stats(const at::Tensor& reconstructed, const at::Tensor& label,
                               const at::Tensor& feature_acts, const at::Tensor& mask,
                               const at::Tensor& fired, std::int64_t layers) {
  SAES_ASSERT(reconstructed.sizes() == label.sizes(), "reconstructed and label shapes differ");
  SAES_ASSERT(layers == 0 || (label.dim() == 3 && label.size(0) == layers),
              "layered statistics need [layers={}, n_tokens, d] outputs", layers);
  const auto acc = at::kFloat;
  const at::Tensor f = rows(feature_acts);
  const std::int64_t n_rows = layers > 0 ? label.size(1) : rows(label).size(0);
  SAES_ASSERT(f.size(0) == n_rows, "feature_acts rows {} != label rows {}", f.size(0), n_rows);
  const at::Tensor w =
      mask.defined() ? mask.reshape({-1}).to(acc) : at::ones({n_rows}, label.options().dtype(acc));
  BatchStats s;
  s.n_tokens = w.sum().item<double>();
  const double n = std::max(s.n_tokens, 1.0);
  if (layers == 0) {
    const Recon r = reconstruction_stats(rows(reconstructed).to(acc), rows(label).to(acc), w, n);
    s.explained_variance = r.ev;
    s.explained_variance_legacy = r.ev_legacy;
    s.l2_norm_error = r.l2_error;
    s.l2_norm_error_ratio = r.y_norm > 0 ? r.l2_error / r.y_norm : 0.0;
  } else {
    double y_norm = 0.0;
    for (std::int64_t l = 0; l < layers; ++l) {
      const Recon r = reconstruction_stats(reconstructed[l].to(acc), label[l].to(acc), w, n);
      s.layer_explained_variance.push_back(r.ev);
      s.explained_variance += r.ev / static_cast<double>(layers);
      s.explained_variance_legacy += r.ev_legacy / static_cast<double>(layers);
      s.l2_norm_error += r.l2_error / static_cast<double>(layers);
      y_norm += r.y_norm / static_cast<double>(layers);
    }
    s.l2_norm_error_ratio = y_norm > 0 ? s.l2_norm_error / y_norm : 0.0;
  }
  // Per-feature sums as w · f (a matrix-vector product: no [tokens, features] temporaries).
  const at::Tensor f_acc = f.to(acc);
  s.fired = fired.defined() ? fired.to(at::kDouble).cpu()
                            : w.matmul(f.gt(0).to(acc)).to(at::kDouble).cpu();
  s.l0_sum = s.fired.sum().item<double>();
  const double act_sum = w.matmul(f_acc).sum().item<double>();
  s.mean_feature_act = s.l0_sum > 0 ? act_sum / s.l0_sum : 0.0;
  return s;
}

MetricsTracker::MetricsTracker(std::int64_t n_features, std::int64_t log_frequency,
                               std::int64_t dead_threshold, std::int64_t feature_layers)
    : n_features_(n_features),
      feature_layers_(feature_layers),
      log_frequency_(log_frequency),
      dead_threshold_(dead_threshold),
      window_fired_(at::zeros({n_features}, at::kDouble)),
      tokens_since_fired_(at::zeros({n_features}, at::kLong)) {
  SAES_CHECK(log_frequency > 0, ConfigError, "trainer.log_frequency: expected > 0, got {}",
             log_frequency);
  SAES_ASSERT(feature_layers >= 1 && n_features % feature_layers == 0,
              "{} features do not split into {} layers", n_features, feature_layers);
}

void MetricsTracker::add(const std::string& key, Reduce reduce, double value, double weight) {
  Accumulator& a = window_[key];
  a.reduce = reduce;
  if (reduce == Reduce::kMax) {
    a.value = a.weight > 0 ? std::max(a.value, value) : value;
    a.weight += 1.0;
  } else if (reduce == Reduce::kLast) {
    a.value = value;
    a.weight = 1.0;
  } else {
    a.sum += value;
    a.weight += weight;
  }
}

void MetricsTracker::update(const StepRecord& r) {
  for (const auto& [name, value] : r.losses) add("losses/" + name, Reduce::kMean, value);
  for (const auto& [name, value] : r.metrics) add(name, Reduce::kMean, value);
  if (r.stats) {
    const BatchStats& s = *r.stats;
    add("metrics/explained_variance", Reduce::kMean, s.explained_variance);
    add("metrics/explained_variance_legacy", Reduce::kMean, s.explained_variance_legacy);
    add("metrics/l2_norm_error", Reduce::kMean, s.l2_norm_error);
    add("metrics/l2_norm_error_ratio", Reduce::kMean, s.l2_norm_error_ratio);
    add("metrics/mean_feature_act", Reduce::kMean, s.mean_feature_act);
    add("metrics/l0", Reduce::kMean, s.l0_sum, s.n_tokens);
    for (std::size_t l = 0; l < s.layer_explained_variance.size(); ++l) {
      add(fmt::format("metrics/explained_variance_L{}", l), Reduce::kMean,
          s.layer_explained_variance[l]);
    }
    SAES_ASSERT(s.fired.numel() == n_features_, "fired counts: {} features, expected {}",
                s.fired.numel(), n_features_);
    window_fired_.add_(s.fired);
    window_tokens_ += s.n_tokens;
  }
  add("metrics/gradient_norm_before_clipping", Reduce::kMax, r.grad_norm_before_clipping);
  add("metrics/gradient_norm_per_param", Reduce::kMax, r.grad_norm_after_clipping);
  add("details/current_learning_rate", Reduce::kLast, r.learning_rate);
  add("details/n_training_tokens", Reduce::kLast, static_cast<double>(r.n_training_tokens));
  add("details/l1_coefficient", Reduce::kLast, r.l1_coefficient);
  if (r.lp_coefficient) add("details/lp_coefficient", Reduce::kLast, *r.lp_coefficient);
  if (r.auxk_coefficient) add("details/auxk_coefficient", Reduce::kLast, *r.auxk_coefficient);
}

void MetricsTracker::track_firing(const at::Tensor& fired, double n_tokens) {
  SAES_ASSERT(fired.numel() == n_features_, "fired counts: {} features, expected {}", fired.numel(),
              n_features_);
  const at::Tensor any = fired.reshape({-1}).gt(0).cpu();
  tokens_since_fired_.add_(static_cast<std::int64_t>(n_tokens)).masked_fill_(any, 0);
}

at::Tensor MetricsTracker::dead_mask() const { return tokens_since_fired_.ge(dead_threshold_); }

at::Tensor MetricsTracker::window_frequency() const {
  return window_tokens_ > 0 ? window_fired_.div(window_tokens_) : at::Tensor();
}

bool MetricsTracker::should_log(std::int64_t cur_step) const {
  return (cur_step + 1) % log_frequency_ == 0;
}

MetricValues MetricsTracker::flush(const std::map<std::string, double>& model_stats) {
  MetricValues out;
  for (const auto& [key, a] : window_) {
    const bool mean = a.reduce == Reduce::kMean;
    out.emplace_back(key, mean ? (a.weight > 0 ? a.sum / a.weight : 0.0) : a.value);
  }
  if (window_tokens_ > 0) {
    const at::Tensor freq = window_fired_.div(window_tokens_);
    const auto count = [&](const at::Tensor& m) { return m.sum().item<double>(); };
    const auto buckets = [&](const at::Tensor& q, const at::Tensor& since,
                             const std::string& suffix) {
      out.emplace_back("sparsity/above_1e-1" + suffix, count(q.gt(1e-1)));
      out.emplace_back("sparsity/above_1e-2" + suffix, count(q.gt(1e-2)));
      out.emplace_back("sparsity/below_1e-5" + suffix, count(q.lt(1e-5)));
      out.emplace_back("sparsity/below_1e-6" + suffix, count(q.lt(1e-6)));
      out.emplace_back("sparsity/below_1e-7" + suffix, count(q.lt(1e-7)));
      out.emplace_back("sparsity/dense_features" + suffix, count(q.gt(0.5)));
      out.emplace_back("sparsity/dead_features" + suffix, count(since.ge(dead_threshold_)));
    };
    buckets(freq, tokens_since_fired_, "");
    if (feature_layers_ > 1) {
      const std::int64_t per = n_features_ / feature_layers_;
      for (std::int64_t l = 0; l < feature_layers_; ++l) {
        const at::Tensor q = freq.narrow(0, l * per, per);
        out.emplace_back(fmt::format("metrics/l0_layer{}", l), q.sum().item<double>());
        buckets(q, tokens_since_fired_.narrow(0, l * per, per), fmt::format("_layer{}", l));
      }
    }
  }
  for (const auto& [key, value] : model_stats) out.emplace_back(key, value);
  window_.clear();
  window_fired_.zero_();
  window_tokens_ = 0.0;
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> MetricsTracker::state_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [key, a] : window_) {
    const std::vector<double> packed = {static_cast<double>(a.reduce), a.sum, a.weight, a.value};
    out.emplace_back("window." + key, at::tensor(packed, at::kDouble));
  }
  out.emplace_back("window_fired", window_fired_);
  out.emplace_back("window_tokens", at::tensor(std::vector<double>{window_tokens_}, at::kDouble));
  out.emplace_back("tokens_since_fired", tokens_since_fired_);
  return out;
}

void MetricsTracker::load_state(const std::map<std::string, at::Tensor>& tensors) {
  const auto get = [&](const std::string& name) {
    const auto it = tensors.find(name);
    SAES_CHECK(it != tensors.end(), DataError, "metrics state: missing tensor '{}'", name);
    return it->second;
  };
  const at::Tensor fired = get("window_fired");
  const at::Tensor since = get("tokens_since_fired");
  SAES_CHECK(fired.numel() == n_features_ && since.numel() == n_features_, DataError,
             "metrics state: {} features, expected {}", fired.numel(), n_features_);
  window_fired_ = fired.to(at::kDouble).clone();
  tokens_since_fired_ = since.to(at::kLong).clone();
  window_tokens_ = get("window_tokens").item<double>();
  window_.clear();
  const std::string prefix = "window.";
  for (const auto& [name, t] : tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    SAES_CHECK(t.numel() == 4, DataError, "metrics state '{}': expected 4 values, got {}", name,
               t.numel());
    const at::Tensor d = t.to(at::kDouble).contiguous();
    const double* v = d.data_ptr<double>();
    window_[name.substr(prefix.size())] =
        Accumulator{static_cast<Reduce>(static_cast<int>(v[0])), v[1], v[2], v[3]};
  }
}

std::string console_summary(const MetricValues& values) {
  return fmt::format(
      "loss {:.4g} | L0 {:.2f} | EV {:.4f}", find_value(values, "losses/overall_loss", 0.0),
      find_value(values, "metrics/l0", 0.0), find_value(values, "metrics/explained_variance", 0.0));
}

MetricsLog::MetricsLog(std::filesystem::path path, std::optional<std::int64_t> resume_step)
    : path_(std::move(path)) {
  if (resume_step && std::filesystem::exists(path_)) {
    std::istringstream in(io::read_file(path_));
    std::string kept;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto json = nlohmann::json::parse(line, nullptr, false);
      // A torn last line (crash mid-write) is not valid JSON: drop it.
      if (json.is_discarded() || !json.contains("step")) continue;
      if (json["step"].get<std::int64_t>() <= *resume_step) kept += line + "\n";
    }
    io::write_file_atomic(path_, kept);
  } else if (!resume_step) {
    io::write_file_atomic(path_, "");
  }
  file_.reset(std::fopen(path_.c_str(), "ab"));
  SAES_CHECK(file_ != nullptr, IoError, "cannot open {} for appending", path_.string());
}

void MetricsLog::write(std::int64_t step, const MetricValues& values) {
  nlohmann::ordered_json line;
  line["step"] = step;
  for (const auto& [key, value] : values) line[key] = value;
  const std::string text = line.dump() + "\n";
  const bool ok = std::fwrite(text.data(), 1, text.size(), file_.get()) == text.size() &&
                  std::fflush(file_.get()) == 0;
  SAES_CHECK(ok, IoError, "cannot append to {}", path_.string());
}

}  // namespace saes::training
