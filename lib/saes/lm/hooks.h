// HookSet: which TransformerLens hook points a forward captures and which it replaces, and the
// per-model hook-name table (names, execution order, compact listing for error messages).
// Each name means exactly what TransformerLens >= 3.0 gives without weight processing
// (hook-semantics.md).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "saes/lm/model_config.h"

namespace saes::lm {

/// Receives a hook's value and returns the value that flows onward (same shape).
using HookFn = std::function<at::Tensor(const at::Tensor&)>;

/// What one forward should do at hook points. Replacements run in registration order; a captured
/// hook records the value after its replacements (the value the model goes on with).
/// The forward stops right after the deepest *captured* hook: replacements on later hooks are never
/// called (they could not change any captured value).
class HookSet {
 public:
  HookSet& capture(const std::string& name);
  HookSet& replace(const std::string& name, HookFn fn);
  /// A replacement that does not read the hook's value (it returns a tensor of its own): the
  /// forward may then skip what only feeds that value — a blocks.L.hook_mlp_out's MLP when no
  /// hook inside it (mlp.hook_post, ln2_post) is captured or replaced, a blocks.L.hook_attn_out's
  /// attention when none of attn.hook_q/k/v/z and ln1_post is — and hand `fn` a tensor of the
  /// right shape whose values are unspecified.
  HookSet& replace_output(const std::string& name, HookFn fn);

  const std::set<std::string>& captures() const { return captures_; }
  /// The names registered with replace_output.
  const std::set<std::string>& output_replacements() const { return output_replacements_; }
  const std::map<std::string, std::vector<HookFn>>& replacements() const { return replacements_; }
  /// Every name mentioned (captured or replaced), for validation.
  std::set<std::string> all_names() const;

 private:
  std::set<std::string> captures_;
  std::map<std::string, std::vector<HookFn>> replacements_;
  std::set<std::string> output_replacements_;
};

/// All hook names of a model with this spec, in execution order.
std::vector<std::string> hook_names_for(const TransformerSpec& spec);

/// "hook_embed, blocks.{0..4}.{hook_resid_pre, ln1.hook_normalized, ...}, ln_final.hook_normalized,
/// logits": the valid names in a compact form for error messages.
std::string compact_hook_listing(const TransformerSpec& spec);

/// Where a hook sits in the forward: 0 = embedding, 2L+1 = attention part of block L (resid_pre ..
/// resid_mid), 2L+2 = MLP part of block L (ln2 .. resid_post), 2n+1 = ln_final, 2n+2 = logits.
/// Throws ConfigError "unknown hook '<name>' for this model (<n> layers); valid: ..." when `name`
/// is not a hook of this spec.
int64_t hook_stage(const TransformerSpec& spec, const std::string& name);

}  // namespace saes::lm
