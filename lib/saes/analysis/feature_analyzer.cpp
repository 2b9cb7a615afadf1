// FeatureAnalyzer: vectorized per-batch statistics (torch) and candidate selection against the
// per-feature heap thresholds, then per-candidate heap updates on the CPU.
#include "saes/analysis/feature_analyzer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/isin.h>
#include <ATen/ops/log10.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/masked_select.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/masked_fill.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"

namespace saes::analysis {
namespace {

/// Heap order: a smaller score is "greater" (top of a min-heap); on equal scores the later
/// context is evicted first, so earlier contexts win ties.
bool heap_less(const SampledContext& a, const SampledContext& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.provenance.rank != b.provenance.rank) return a.provenance.rank < b.provenance.rank;
  return a.provenance.context_index < b.provenance.context_index;
}

std::int64_t vector_bytes(const SampledContext& c) {
  return static_cast<std::int64_t>(sizeof(SampledContext) + 4 * c.tokens.capacity() +
                                   4 * c.positions.capacity() + 4 * c.values.capacity());
}

}  // namespace

std::vector<Band> bands_of(const FeatureAnalyzerConfig& config) {
  std::vector<Band> out;
  for (const auto& [name, band] : config.subsamples) {
    out.push_back({name, band.proportion, band.n_samples, band.max_length.value_or(0)});
  }
  return out;
}

FeatureAnalyzer::FeatureAnalyzer(std::int64_t d_sae, AnalyzerOptions options)
    : d_sae_(d_sae),
      options_(std::move(options)),
      act_times_(static_cast<std::size_t>(d_sae)),
      max_act_(static_cast<std::size_t>(d_sae)),
      sum_act_(static_cast<std::size_t>(d_sae)),
      histogram_(static_cast<std::size_t>(d_sae * options_.histogram.bins)),
      heaps_(options_.bands.size(), std::vector<Heap>(static_cast<std::size_t>(d_sae))) {
  SAES_CHECK(d_sae > 0 && options_.histogram.bins > 0 &&
                 options_.histogram.log10_max > options_.histogram.log10_min,
             ConfigError, "analyzer: need d_sae > 0 and a non-empty histogram range, got d_sae {}",
             d_sae);
}

void FeatureAnalyzer::add_batch(const at::Tensor& feature_acts, const at::Tensor& tokens,
                                const at::Tensor& mask) {
  SAES_CHECK(feature_acts.dim() == 3 && feature_acts.size(2) == d_sae_ && tokens.dim() == 2 &&
                 tokens.size(0) == feature_acts.size(0) && tokens.size(1) == feature_acts.size(1),
             DataError, "analyzer: expected feature acts [B, T, {}] and tokens [B, T], got {} and {}",
             d_sae_, fmt::join(feature_acts.sizes(), "x"), fmt::join(tokens.sizes(), "x"));
  const std::int64_t batch = feature_acts.size(0);
  const std::int64_t seq = feature_acts.size(1);
  const auto device = feature_acts.device();
  at::Tensor keep = mask.defined() ? mask.to(device, at::kBool)
                                   : at::ones({batch, seq}, feature_acts.options().dtype(at::kBool));
  const at::Tensor tok = tokens.to(device);
  if (!options_.ignore_token_ids.empty()) {
    auto& ids = options_.ignore_token_ids;
    const at::Tensor ignore =
        at::from_blob(ids.data(), {static_cast<std::int64_t>(ids.size())}, at::kLong).to(device);
    keep = keep.logical_and(at::isin(tok, ignore).logical_not());
  }
  const at::Tensor f = feature_acts.to(at::kFloat).masked_fill(keep.logical_not().unsqueeze(-1), 0);
  const at::Tensor fired = f.gt(0);
  const at::Tensor counts = fired.sum(at::IntArrayRef{0, 1}, false, at::kLong).cpu();
  const at::Tensor sums = f.sum(at::IntArrayRef{0, 1}, false, at::kDouble).cpu();
  const at::Tensor peak = f.amax({1});  // [B, d_sae]
  const at::Tensor batch_max = peak.amax({0}).to(at::kDouble).cpu();

  const HistogramSpec& h = options_.histogram;
  const at::Tensor values = at::masked_select(f, fired);
  if (values.numel() > 0) {
    // The feature index of each selected value (cheaper than nonzero() on [B, T, d_sae]).
    const at::Tensor feature = at::masked_select(
        at::arange(d_sae_, f.options().dtype(at::kLong)).expand_as(f), fired);
    const double scale = static_cast<double>(h.bins) / (h.log10_max - h.log10_min);
    const at::Tensor bin = values.log10().sub(h.log10_min).mul(scale).floor().clamp(0, h.bins - 1)
                               .to(at::kLong);
    const at::Tensor slot = feature.mul(h.bins).add(bin);
    const at::Tensor hist = at::bincount(slot, {}, d_sae_ * h.bins).cpu();
    const auto* hp = hist.data_ptr<std::int64_t>();
    for (std::size_t i = 0; i < histogram_.size(); ++i) histogram_[i] += hp[i];
  }
  const auto* cp = counts.data_ptr<std::int64_t>();
  const auto* sp = sums.data_ptr<double>();
  const auto* mp = batch_max.data_ptr<double>();
  for (std::int64_t i = 0; i < d_sae_; ++i) {
    act_times_[static_cast<std::size_t>(i)] += cp[i];
    sum_act_[static_cast<std::size_t>(i)] += sp[i];
    max_act_[static_cast<std::size_t>(i)] = std::max(max_act_[static_cast<std::size_t>(i)], mp[i]);
  }

  // Context lengths: up to the last real token.
  const at::Tensor keep_cpu =
      (mask.defined() ? mask.to(at::kCPU, at::kBool) : at::ones({batch, seq}, at::kBool))
          .contiguous();
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(batch), 0);
  const auto* kp = keep_cpu.data_ptr<bool>();
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = seq; t > 0; --t) {
      if (kp[b * seq + t - 1]) {
        lengths[static_cast<std::size_t>(b)] = t;
        break;
      }
    }
  }
  const at::Tensor f_cpu = f.cpu().contiguous();
  const at::Tensor tok_cpu = tokens.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor peak_cpu = peak.cpu().contiguous();
  for (std::size_t band = 0; band < options_.bands.size(); ++band) {
    sample_band(band, peak_cpu, f_cpu.data_ptr<float>(), tok_cpu.data_ptr<std::int64_t>(), lengths,
                seq);
  }
  n_tokens_ += keep.sum().item<std::int64_t>();
  n_contexts_ += batch;
}

void FeatureAnalyzer::sample_band(std::size_t band, const at::Tensor& peak, const float* acts,
                                  const std::int64_t* tokens,
                                  const std::vector<std::int64_t>& lengths, std::int64_t seq) {
  const Band& cfg = options_.bands[band];
  std::vector<Heap>& heaps = heaps_[band];
  std::vector<float> floor(static_cast<std::size_t>(d_sae_));
  std::vector<float> ceiling(static_cast<std::size_t>(d_sae_));
  for (std::size_t i = 0; i < floor.size(); ++i) {
    const bool full = static_cast<std::int64_t>(heaps[i].items.size()) >= cfg.n_samples;
    float lo = full ? heaps[i].items.front().score : -1.0F;
    if (cfg.proportion >= 1.0) lo = std::max(lo, 0.0F);
    floor[i] = lo;
    ceiling[i] = static_cast<float>(cfg.proportion * max_act_[i]);
  }
  const at::Tensor lo = at::from_blob(floor.data(), {d_sae_}, at::kFloat);
  const at::Tensor hi = at::from_blob(ceiling.data(), {d_sae_}, at::kFloat);
  // Ties with a full heap's minimum never enter (earlier contexts win), hence the strict >.
  const at::Tensor candidates = peak.gt(lo).logical_and(peak.le(hi)).nonzero().contiguous();
  const auto* cand = candidates.data_ptr<std::int64_t>();
  const auto* pk = peak.data_ptr<float>();
  for (std::int64_t c = 0; c < candidates.size(0); ++c) {
    const std::int64_t b = cand[2 * c];
    const std::int64_t i = cand[2 * c + 1];
    Heap& heap = heaps[static_cast<std::size_t>(i)];
    const float score = pk[b * d_sae_ + i];
    if (static_cast<std::int64_t>(heap.items.size()) >= cfg.n_samples &&
        score <= heap.items.front().score) {
      continue;  // an earlier candidate of this batch raised the floor
    }
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    std::int64_t begin = 0;
    std::int64_t end = len;
    const float* row = acts + b * seq * d_sae_ + i;
    if (cfg.max_length > 0 && len > cfg.max_length) {
      std::int64_t at_peak = 0;
      for (std::int64_t t = 0; t < len; ++t) {
        if (row[t * d_sae_] > row[at_peak * d_sae_]) at_peak = t;
      }
      begin = std::clamp<std::int64_t>(at_peak - cfg.max_length / 2, 0, len - cfg.max_length);
      end = begin + cfg.max_length;
    }
    SampledContext item;
    item.score = score;
    item.provenance = {n_contexts_ + b, options_.rank};
    item.offset = static_cast<std::int32_t>(begin);
    for (std::int64_t t = begin; t < end; ++t) {
      item.tokens.push_back(static_cast<std::int32_t>(tokens[b * seq + t]));
      const float v = row[t * d_sae_];
      if (v > 0) {
        item.positions.push_back(static_cast<std::int32_t>(t - begin));
        item.values.push_back(v);
      }
    }
    push(heap, cfg.n_samples, std::move(item));
  }
}

void FeatureAnalyzer::push(Heap& heap, std::int64_t capacity, SampledContext&& item) {
  auto& v = heap.items;
  if (static_cast<std::int64_t>(v.size()) < capacity) {
    v.push_back(std::move(item));
    std::push_heap(v.begin(), v.end(), heap_less);
    return;
  }
  if (!heap_less(item, v.front())) return;
  std::pop_heap(v.begin(), v.end(), heap_less);
  v.back() = std::move(item);
  std::push_heap(v.begin(), v.end(), heap_less);
}

void FeatureAnalyzer::merge(const FeatureAnalyzer& other) {
  bool same = other.d_sae_ == d_sae_ && other.options_.histogram == options_.histogram &&
              other.options_.bands.size() == options_.bands.size();
  for (std::size_t b = 0; same && b < options_.bands.size(); ++b) {
    same = other.options_.bands[b].name == options_.bands[b].name &&
           other.options_.bands[b].n_samples == options_.bands[b].n_samples;
  }
  SAES_CHECK(same, DataError,
             "analyzer merge: the other analyzer has different d_sae ({} vs {}), bands or "
             "histogram",
             other.d_sae_, d_sae_);
  for (std::size_t i = 0; i < act_times_.size(); ++i) {
    act_times_[i] += other.act_times_[i];
    sum_act_[i] += other.sum_act_[i];
    max_act_[i] = std::max(max_act_[i], other.max_act_[i]);
  }
  for (std::size_t i = 0; i < histogram_.size(); ++i) histogram_[i] += other.histogram_[i];
  for (std::size_t b = 0; b < heaps_.size(); ++b) {
    for (std::size_t i = 0; i < heaps_[b].size(); ++i) {
      for (const auto& item : other.heaps_[b][i].items) {
        push(heaps_[b][i], options_.bands[b].n_samples, SampledContext(item));
      }
    }
  }
  n_tokens_ += other.n_tokens_;
  n_contexts_ += other.n_contexts_;
}

std::int64_t FeatureAnalyzer::memory_bytes() const {
  std::int64_t total = static_cast<std::int64_t>(
      8 * (act_times_.size() + max_act_.size() + sum_act_.size() + histogram_.size()));
  for (const auto& band : heaps_) {
    for (const auto& heap : band) {
      total += static_cast<std::int64_t>(sizeof(Heap) +
                                         sizeof(SampledContext) * heap.items.capacity());
      for (const auto& item : heap.items) total += vector_bytes(item) - sizeof(SampledContext);
    }
  }
  return total;
}

std::vector<FeatureStats> FeatureAnalyzer::finish() const {
  std::vector<FeatureStats> out(static_cast<std::size_t>(d_sae_));
  const auto bins = static_cast<std::size_t>(options_.histogram.bins);
  for (std::size_t i = 0; i < out.size(); ++i) {
    FeatureStats& s = out[i];
    s.act_times = act_times_[i];
    s.max_act = max_act_[i];
    s.mean_act = s.act_times > 0 ? sum_act_[i] / static_cast<double>(s.act_times) : 0.0;
    s.histogram.assign(histogram_.begin() + static_cast<std::ptrdiff_t>(i * bins),
                       histogram_.begin() + static_cast<std::ptrdiff_t>((i + 1) * bins));
    for (const auto& band : heaps_) {
      std::vector<SampledContext> items = band[i].items;
      std::sort(items.begin(), items.end(), heap_less);
      s.samples.push_back(std::move(items));
    }
  }
  return out;
}

}  // namespace saes::analysis
