// Decoder geometry and logit lens, both computed in row chunks of the decoder.
#include "saes/analysis/geometry.h"

#include <algorithm>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/topk.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"

namespace saes::analysis {
namespace {

template <class T>
void append(std::vector<T>& out, const at::Tensor& t) {
  const at::Tensor c = t.cpu().contiguous();
  const T* p = c.data_ptr<T>();
  out.insert(out.end(), p, p + c.numel());
}

}  // namespace

NearestRow max_decoder_cosine(const at::Tensor& W_D, std::int64_t chunk_rows) {
  SAES_CHECK(W_D.dim() == 2 && chunk_rows > 0, DataError,
             "max_decoder_cosine: expected W_D [d_sae, d_model], got {} dims", W_D.dim());
  const std::int64_t n = W_D.size(0);
  NearestRow out;
  if (n < 2) {
    out.cosine.assign(static_cast<std::size_t>(n), 0.0F);
    out.index.assign(static_cast<std::size_t>(n), -1);
    return out;
  }
  const at::Tensor w = W_D.to(at::kFloat);
  const at::Tensor unit = w.div(at::linalg_vector_norm(w, 2, {1}, true).clamp_min(1e-12));
  for (std::int64_t start = 0; start < n; start += chunk_rows) {
    const std::int64_t len = std::min(chunk_rows, n - start);
    at::Tensor sim = at::mm(unit.narrow(0, start, len), unit.t());
    sim.narrow(1, start, len).diagonal().fill_(-2.0);  // a row is not its own neighbour
    const auto [values, indices] = sim.max(1);
    append<float>(out.cosine, values);
    append<std::int64_t>(out.index, indices);
  }
  return out;
}

std::vector<LogitLens> logit_lens(const std::vector<at::Tensor>& terms, const ToLogits& to_logits,
                                  std::int64_t k, std::int64_t chunk_rows) {
  SAES_CHECK(!terms.empty() && terms.front().dim() == 2, DataError,
             "logit_lens: expected one or more [d_sae, d_model] decoder tensors");
  const std::int64_t n = terms.front().size(0);
  for (const at::Tensor& t : terms) {
    SAES_CHECK(t.sizes() == terms.front().sizes(), DataError,
               "logit_lens: decoder terms of shapes {} and {}", fmt::join(t.sizes(), "x"),
               fmt::join(terms.front().sizes(), "x"));
  }
  std::vector<LogitLens> out(static_cast<std::size_t>(n));
  for (std::int64_t start = 0; start < n; start += chunk_rows) {
    const std::int64_t len = std::min(chunk_rows, n - start);
    at::Tensor logits;
    for (const at::Tensor& t : terms) {
      const at::Tensor part = to_logits(t.narrow(0, start, len)).to(at::kFloat);
      logits = logits.defined() ? logits + part : part;
    }
    SAES_CHECK(logits.dim() == 2 && logits.size(0) == len, DataError,
               "logit_lens: the unembedding returned [{}] for {} rows", fmt::join(logits.sizes(), "x"),
               len);
    const std::int64_t kk = std::min(k, logits.size(1));
    const auto [top_v, top_i] = at::topk(logits, kk, 1, true, true);
    const auto [bot_v, bot_i] = at::topk(logits, kk, 1, false, true);
    std::vector<float> tv, bv;
    std::vector<std::int64_t> ti, bi;
    append<float>(tv, top_v);
    append<float>(bv, bot_v);
    append<std::int64_t>(ti, top_i);
    append<std::int64_t>(bi, bot_i);
    for (std::int64_t r = 0; r < len; ++r) {
      LogitLens& l = out[static_cast<std::size_t>(start + r)];
      const auto from = static_cast<std::ptrdiff_t>(r * kk);
      const auto to = static_cast<std::ptrdiff_t>((r + 1) * kk);
      l.top_values.assign(tv.begin() + from, tv.begin() + to);
      l.top_tokens.assign(ti.begin() + from, ti.begin() + to);
      l.bottom_values.assign(bv.begin() + from, bv.begin() + to);
      l.bottom_tokens.assign(bi.begin() + from, bi.begin() + to);
    }
  }
  return out;
}

}  // namespace saes::analysis
