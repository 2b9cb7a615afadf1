// llama2.c v0 checkpoint reader: 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size (< 0: unshared classifier), seq_len), then float32 arrays in run.c's order.
#include "saes/lm/llama2c_loader.h"

#include <ATen/ops/empty.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::lm {
namespace {

constexpr std::uint32_t kVersionedMagic = 0x616b3432;  // "ak42" read as a little-endian uint32
constexpr int64_t kHeaderBytes = 7 * 4;

/// Sequential float32 reader over the checkpoint bytes.
class FloatCursor {
 public:
  FloatCursor(const std::string& bytes, int64_t offset) : bytes_(bytes), offset_(offset) {}
  /// Next `numel(shape)` floats as a fresh tensor of `shape`.
  at::Tensor take(const std::vector<int64_t>& shape) {
    at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
    const auto n_bytes = static_cast<std::size_t>(out.numel()) * sizeof(float);
    SAES_ASSERT(offset_ + static_cast<int64_t>(n_bytes) <= static_cast<int64_t>(bytes_.size()),
                "read past the validated size");
    std::memcpy(out.data_ptr<float>(), bytes_.data() + offset_, n_bytes);
    offset_ += static_cast<int64_t>(n_bytes);
    return out;
  }
  void skip(int64_t n_floats) { offset_ += n_floats * 4; }

 private:
  const std::string& bytes_;
  int64_t offset_;
};

TransformerSpec spec_from_header(const std::array<int32_t, 7>& h, const std::string& where) {
  const char* names[] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                         "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    const int64_t value = i == 5 ? std::abs(static_cast<int64_t>(h[i])) : h[i];
    SAES_CHECK(value > 0, DataError, "{}: header field {} must be > 0, got {}", where, names[i],
               h[i]);
  }
  SAES_CHECK(h[0] % h[3] == 0, DataError, "{}: dim ({}) is not a multiple of n_heads ({})", where,
             h[0], h[3]);
  SAES_CHECK(h[3] % h[4] == 0, DataError, "{}: n_heads ({}) is not a multiple of n_kv_heads ({})",
             where, h[3], h[4]);
  TransformerSpec spec;
  spec.architecture = Architecture::kLlama2c;
  spec.d_model = h[0];
  spec.d_mlp = h[1];
  spec.n_layers = h[2];
  spec.n_heads = h[3];
  spec.n_kv_heads = h[4];
  spec.d_vocab = std::abs(static_cast<int64_t>(h[5]));
  spec.n_ctx = h[6];
  spec.d_head = spec.d_model / spec.n_heads;
  spec.norm = NormType::kRmsNorm;
  spec.norm_eps = 1e-5;
  spec.act = Activation::kSiluGated;
  spec.positional = Positional::kRotary;
  spec.rotary_dim = spec.d_head;
  spec.rope_theta = 10000.0;
  spec.rope_style = RopeStyle::kInterleaved;
  spec.tied_embeddings = h[5] > 0;
  spec.bos_token_id = 1;
  spec.eos_token_id = 2;
  return spec;
}

int64_t expected_float_count(const TransformerSpec& s) {
  const int64_t d = s.d_model, l = s.n_layers, kv = s.n_kv_heads * s.d_head;
  int64_t n = s.d_vocab * d;                    // tok_embeddings
  n += l * d;                                   // attention_norm
  n += l * d * d + 2 * l * kv * d + l * d * d;  // wq, wk, wv, wo
  n += l * d;                                   // ffn_norm
  n += 3 * l * s.d_mlp * d;                     // w1, w2, w3
  n += d;                                       // final norm
  n += 2 * s.n_ctx * (s.d_head / 2);            // legacy freq_cis_real / freq_cis_imag
  if (!s.tied_embeddings) n += s.d_vocab * d;   // wcls
  return n;
}

/// Reads one [n_layers, ...] stacked array and stores layer slices under blocks.L.<suffix>.
void take_per_layer(FloatCursor& cursor, MapWeightSource& out, const TransformerSpec& s,
                    const std::string& suffix, const std::vector<int64_t>& shape) {
  std::vector<int64_t> stacked = {s.n_layers};
  stacked.insert(stacked.end(), shape.begin(), shape.end());
  const at::Tensor all = cursor.take(stacked);
  for (int64_t l = 0; l < s.n_layers; ++l) {
    out.set("blocks." + std::to_string(l) + "." + suffix, all.select(0, l).clone());
  }
}

}  // namespace

Llama2cCheckpoint read_llama2c_checkpoint(const std::filesystem::path& path) {
  const std::string where = "llama2.c checkpoint " + path.string();
  const std::string bytes = io::read_file(path);
  const auto size = static_cast<int64_t>(bytes.size());
  SAES_CHECK(size >= 4, DataError, "{}: file has {} bytes, too short for a header", where, size);
  std::uint32_t magic = 0;
  std::memcpy(&magic, bytes.data(), 4);
  SAES_CHECK(magic != kVersionedMagic, UnsupportedError,
             "{}: versioned llama2.c export (magic \"ak42\") is not supported; export with "
             "version 0 (legacy_export)",
             where);
  SAES_CHECK(size >= kHeaderBytes, DataError, "{}: file has {} bytes, expected at least {}", where,
             size, kHeaderBytes);
  std::array<int32_t, 7> header{};
  std::memcpy(header.data(), bytes.data(), kHeaderBytes);
  Llama2cCheckpoint ckpt{spec_from_header(header, where), MapWeightSource({}, where)};
  const TransformerSpec& s = ckpt.spec;
  const int64_t expected = kHeaderBytes + 4 * expected_float_count(s);
  SAES_CHECK(size == expected, DataError,
             "{}: file size {} bytes, expected {} bytes for dim={} hidden_dim={} n_layers={} "
             "n_heads={} n_kv_heads={} vocab_size={} seq_len={} (truncated or not a v0 file?)",
             where, size, expected, header[0], header[1], header[2], header[3], header[4],
             header[5], header[6]);

  const int64_t d = s.d_model, kv = s.n_kv_heads * s.d_head;
  FloatCursor cursor(bytes, kHeaderBytes);
  MapWeightSource& w = ckpt.weights;
  w.set("embed.W_E", cursor.take({s.d_vocab, d}));
  take_per_layer(cursor, w, s, "ln1.w", {d});
  take_per_layer(cursor, w, s, "attn.W_Q", {d, d});
  take_per_layer(cursor, w, s, "attn.W_K", {kv, d});
  take_per_layer(cursor, w, s, "attn.W_V", {kv, d});
  take_per_layer(cursor, w, s, "attn.W_O", {d, d});
  take_per_layer(cursor, w, s, "ln2.w", {d});
  take_per_layer(cursor, w, s, "mlp.W_gate", {s.d_mlp, d});  // w1
  take_per_layer(cursor, w, s, "mlp.W_out", {d, s.d_mlp});   // w2
  take_per_layer(cursor, w, s, "mlp.W_in", {s.d_mlp, d});    // w3
  w.set("ln_final.w", cursor.take({d}));
  cursor.skip(2 * s.n_ctx * (s.d_head / 2));
  if (!s.tied_embeddings) w.set("unembed.W_U", cursor.take({s.d_vocab, d}));
  return ckpt;
}

Transformer load_llama2c(const std::filesystem::path& path, TransformerOptions options) {
  Llama2cCheckpoint ckpt = read_llama2c_checkpoint(path);
  return Transformer(ckpt.spec, ckpt.weights, options);
}

}  // namespace saes::lm
