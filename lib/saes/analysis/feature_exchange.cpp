// FeatureStats encoding (fixed-width little-endian fields, length-prefixed vectors) and the gather
// of feature-split analysis results.
#include "saes/analysis/feature_exchange.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"

namespace saes::analysis {
namespace {

static_assert(std::endian::native == std::endian::little, "the encoding is little-endian");

class Writer {
 public:
  template <class T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const char*>(&value);
    out_.append(p, sizeof(T));
  }
  template <class T>
  void put_vector(const std::vector<T>& v) {
    put<std::int64_t>(static_cast<std::int64_t>(v.size()));
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  template <class T>
  T get() {
    T value;
    need(sizeof(T));
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  template <class T>
  std::vector<T> get_vector() {
    const auto n = get<std::int64_t>();
    SAES_CHECK(n >= 0 && static_cast<std::uint64_t>(n) <= (bytes_.size() - at_) / sizeof(T),
               DataError, "feature statistics: a vector of {} entries overruns the {} bytes", n,
               bytes_.size());
    std::vector<T> v(static_cast<std::size_t>(n));
    if (!v.empty()) std::memcpy(v.data(), bytes_.data() + at_, v.size() * sizeof(T));  // UBSan: null
    at_ += v.size() * sizeof(T);
    return v;
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  void need(std::size_t n) const {
    SAES_CHECK(bytes_.size() - at_ >= n, DataError,
               "feature statistics: truncated at byte {} of {}", at_, bytes_.size());
  }
  std::string_view bytes_;
  std::size_t at_ = 0;
};

}  // namespace

std::string encode_feature_stats(const std::vector<FeatureStats>& features) {
  Writer w;
  w.put<std::int64_t>(static_cast<std::int64_t>(features.size()));
  for (const FeatureStats& f : features) {
    w.put(f.act_times);
    w.put(f.max_act);
    w.put(f.mean_act);
    w.put_vector(f.histogram);
    w.put<std::int64_t>(static_cast<std::int64_t>(f.samples.size()));
    for (const auto& band : f.samples) {
      w.put<std::int64_t>(static_cast<std::int64_t>(band.size()));
      for (const SampledContext& c : band) {
        w.put(c.score);
        w.put(c.provenance.context_index);
        w.put(c.provenance.rank);
        w.put(c.offset);
        w.put_vector(c.tokens);
        w.put_vector(c.positions);
        w.put_vector(c.values);
      }
    }
  }
  return w.take();
}

std::vector<FeatureStats> decode_feature_stats(std::string_view bytes) {
  Reader r(bytes);
  const auto n = r.get<std::int64_t>();
  SAES_CHECK(n >= 0 && static_cast<std::uint64_t>(n) <= bytes.size(), DataError,
             "feature statistics: bad feature count {}", n);
  std::vector<FeatureStats> out(static_cast<std::size_t>(n));
  for (FeatureStats& f : out) {
    f.act_times = r.get<std::int64_t>();
    f.max_act = r.get<double>();
    f.mean_act = r.get<double>();
    f.histogram = r.get_vector<std::int64_t>();
    const auto bands = r.get<std::int64_t>();
    SAES_CHECK(bands >= 0 && static_cast<std::uint64_t>(bands) <= bytes.size(), DataError,
               "feature statistics: bad band count {}", bands);
    f.samples.resize(static_cast<std::size_t>(bands));
    for (auto& band : f.samples) {
      const auto count = r.get<std::int64_t>();
      SAES_CHECK(count >= 0 && static_cast<std::uint64_t>(count) <= bytes.size(), DataError,
                 "feature statistics: bad context count {}", count);
      band.resize(static_cast<std::size_t>(count));
      for (SampledContext& c : band) {
        c.score = r.get<float>();
        c.provenance.context_index = r.get<std::int64_t>();
        c.provenance.rank = r.get<std::int32_t>();
        c.offset = r.get<std::int32_t>();
        c.tokens = r.get_vector<std::int32_t>();
        c.positions = r.get_vector<std::int32_t>();
        c.values = r.get_vector<float>();
      }
    }
  }
  SAES_CHECK(r.done(), DataError, "feature statistics: {} trailing bytes", bytes.size());
  return out;
}

std::vector<FeatureStats> gather_feature_stats(const std::vector<FeatureStats>& local,
                                               distributed::Communicator& group) {
  if (group.size() == 1) return local;
  std::vector<FeatureStats> out;
  for (const std::string& part : group.all_gather_strings(encode_feature_stats(local))) {
    std::vector<FeatureStats> block = decode_feature_stats(part);
    out.insert(out.end(), std::make_move_iterator(block.begin()),
               std::make_move_iterator(block.end()));
  }
  return out;
}

}  // namespace saes::analysis
