// Hook-name tables and HookSet bookkeeping.
#include "saes/lm/hooks.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <utility>

#include "saes/core/error.h"

namespace saes::lm {
namespace {

/// Suffixes after "blocks.L." in execution order, with the block part they belong to
/// (false = attention part, true = MLP part).
std::vector<std::pair<std::string, bool>> block_hooks(const TransformerSpec& spec) {
  std::vector<std::pair<std::string, bool>> out = {
      {"hook_resid_pre", false}, {"ln1.hook_normalized", false}, {"attn.hook_q", false},
      {"attn.hook_k", false},    {"attn.hook_v", false},         {"attn.hook_z", false}};
  if (spec.post_norms) out.emplace_back("ln1_post.hook_normalized", false);
  out.emplace_back("hook_attn_out", false);
  if (!spec.parallel_attn_mlp) out.emplace_back("hook_resid_mid", false);
  out.emplace_back("ln2.hook_normalized", true);
  out.emplace_back("mlp.hook_post", true);
  if (spec.post_norms) out.emplace_back("ln2_post.hook_normalized", true);
  for (const char* name : {"hook_mlp_out", "hook_resid_post"}) out.emplace_back(name, true);
  return out;
}

std::vector<std::string> embed_hooks(const TransformerSpec& spec) {
  if (spec.positional == Positional::kLearned) return {"hook_embed", "hook_pos_embed"};
  return {"hook_embed"};
}

[[noreturn]] void throw_unknown(const TransformerSpec& spec, const std::string& name) {
  SAES_THROW(ConfigError, "unknown hook '{}' for this model ({} layers); valid: {}", name,
             spec.n_layers, compact_hook_listing(spec));
}

}  // namespace

HookSet& HookSet::capture(const std::string& name) {
  captures_.insert(name);
  return *this;
}

HookSet& HookSet::replace(const std::string& name, HookFn fn) {
  replacements_[name].push_back(std::move(fn));
  return *this;
}

HookSet& HookSet::replace_output(const std::string& name, HookFn fn) {
  output_replacements_.insert(name);
  return replace(name, std::move(fn));
}

std::set<std::string> HookSet::all_names() const {
  std::set<std::string> out = captures_;
  for (const auto& [name, fns] : replacements_) out.insert(name);
  return out;
}

std::vector<std::string> hook_names_for(const TransformerSpec& spec) {
  std::vector<std::string> out = embed_hooks(spec);
  const auto suffixes = block_hooks(spec);
  for (int64_t layer = 0; layer < spec.n_layers; ++layer) {
    for (const auto& [suffix, in_mlp] : suffixes)
      out.push_back(fmt::format("blocks.{}.{}", layer, suffix));
  }
  out.emplace_back("ln_final.hook_normalized");
  out.emplace_back("logits");
  return out;
}

std::string compact_hook_listing(const TransformerSpec& spec) {
  std::vector<std::string> suffixes;
  for (const auto& [suffix, in_mlp] : block_hooks(spec)) suffixes.push_back(suffix);
  return fmt::format("{}, blocks.{{0..{}}}.{{{}}}, ln_final.hook_normalized, logits",
                     fmt::join(embed_hooks(spec), ", "), spec.n_layers - 1,
                     fmt::join(suffixes, ", "));
}

int64_t hook_stage(const TransformerSpec& spec, const std::string& name) {
  for (const std::string& embed : embed_hooks(spec)) {
    if (name == embed) return 0;
  }
  if (name == "ln_final.hook_normalized") return 2 * spec.n_layers + 1;
  if (name == "logits") return 2 * spec.n_layers + 2;
  const std::string prefix = "blocks.";
  if (name.rfind(prefix, 0) != 0) throw_unknown(spec, name);
  const std::size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) throw_unknown(spec, name);
  int64_t layer = -1;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + dot;
  const auto [ptr, ec] = std::from_chars(first, last, layer);
  const bool canonical = ec == std::errc() && ptr == last && (last - first == 1 || *first != '0');
  if (!canonical || layer < 0 || layer >= spec.n_layers) {
    throw_unknown(spec, name);
  }
  const std::string suffix = name.substr(dot + 1);
  for (const auto& [candidate, in_mlp] : block_hooks(spec)) {
    if (candidate == suffix) return 2 * layer + (in_mlp ? 2 : 1);
  }
  throw_unknown(spec, name);
}

}  // namespace saes::lm
