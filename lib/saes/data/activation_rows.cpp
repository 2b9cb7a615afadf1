// Rows helpers: provenance id packing and concatenation/slicing/gathering of every tensor of a run
// of rows at once.
#include "saes/data/activation_rows.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/index_select.h>

#include "saes/core/error.h"

namespace saes::data {

std::int64_t row_id(std::int64_t source, std::int64_t seq, std::int64_t row) {
  SAES_CHECK(source >= 0 && source < kMaxSources, ConfigError,
             "activation stream: at most {} sources are supported, got source index {}",
             kMaxSources, source);
  SAES_CHECK(seq >= 0 && seq < (std::int64_t{1} << kSeqBits), DataError,
             "activation stream: chunk number {} of source {} exceeds 2^{}", seq, source, kSeqBits);
  SAES_CHECK(row >= 0 && row < (std::int64_t{1} << kRowBits), DataError,
             "activation stream: a chunk of source {} has more than 2^{} rows", source, kRowBits);
  return (source << (kSeqBits + kRowBits)) | (seq << kRowBits) | row;
}

std::int64_t id_source(std::int64_t id) { return id >> (kSeqBits + kRowBits); }
std::int64_t id_seq(std::int64_t id) {
  return (id >> kRowBits) & ((std::int64_t{1} << kSeqBits) - 1);
}

at::Tensor chunk_ids(std::int64_t source, std::int64_t seq, std::int64_t n_rows) {
  const std::int64_t first = row_id(source, seq, 0);
  if (n_rows > 0) row_id(source, seq, n_rows - 1);
  return at::arange(first, first + n_rows, at::TensorOptions().dtype(at::kLong));
}

namespace {

template <class F>
Rows map_rows(const Rows& rows, F&& f) {
  Rows out;
  out.ids = rows.ids.defined() ? f(rows.ids) : at::Tensor();
  for (const auto& [hook, act] : rows.acts) out.acts.emplace(hook, f(act));
  if (rows.tokens.defined()) out.tokens = f(rows.tokens);
  if (rows.mask.defined()) out.mask = f(rows.mask);
  return out;
}

}  // namespace

Rows cat_rows(const std::vector<Rows>& parts) {
  if (parts.size() == 1) return parts.front();
  Rows out;
  if (parts.empty()) return out;
  auto gather = [&](auto&& get) {
    std::vector<at::Tensor> list;
    list.reserve(parts.size());
    for (const auto& part : parts) list.push_back(get(part));
    return at::cat(list, 0);
  };
  out.ids = gather([](const Rows& r) { return r.ids; });
  for (const auto& [hook, act] : parts.front().acts) {
    out.acts.emplace(hook, gather([&hook = hook](const Rows& r) { return r.acts.at(hook); }));
  }
  if (parts.front().tokens.defined()) out.tokens = gather([](const Rows& r) { return r.tokens; });
  if (parts.front().mask.defined()) out.mask = gather([](const Rows& r) { return r.mask; });
  return out;
}

Rows slice_rows(const Rows& rows, std::int64_t start, std::int64_t length) {
  return map_rows(rows, [&](const at::Tensor& t) { return t.narrow(0, start, length); });
}

Rows index_rows(const Rows& rows, const at::Tensor& index) {
  Rows out = map_rows(rows, [&](const at::Tensor& t) {
    return at::index_select(t, 0, t.device() == index.device() ? index : index.to(t.device()));
  });
  return out;
}

Rows rows_to(const Rows& rows, const c10::Device& device) {
  Rows out = map_rows(rows, [&](const at::Tensor& t) { return t.to(device); });
  out.ids = rows.ids;
  return out;
}

}  // namespace saes::data
