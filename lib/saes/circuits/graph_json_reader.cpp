// Reading graph JSON (graph_json.h): ours or circuit-tracer's, checked against the keys and types
// the Neuronpedia schema requires; optional fields left empty when absent or null.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/circuits/graph_json.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::circuits {
namespace {

using json = nlohmann::json;

/// Resolves `key` in `object`, named `where.key` in errors.
class Reader {
 public:
  explicit Reader(std::string name) : name_(std::move(name)) {}

  const json& member(const json& object, const char* key, const std::string& where,
                     bool required = true) const {
    static const json kNull;
    SAES_CHECK(object.is_object(), DataError, "{}: {}: expected an object", name_, where);
    const auto it = object.find(key);
    SAES_CHECK(it != object.end() || !required, DataError, "{}: {}.{}: missing", name_, where, key);
    return it == object.end() ? kNull : *it;
  }
  std::string text(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    SAES_CHECK(v.is_string(), DataError, "{}: {}.{}: expected a string, got {}", name_, where, key,
               v.type_name());
    return v.get<std::string>();
  }
  std::int64_t integer(const json& object, const char* key, const std::string& where) const {
    const json& v = member(object, key, where);
    SAES_CHECK(v.is_number_integer(), DataError, "{}: {}.{}: expected an integer, got {}", name_,
               where, key, v.type_name());
    return v.get<std::int64_t>();
  }
  std::optional<std::int64_t> opt_integer(const json& object, const char* key,
                                          const std::string& where) const {
    const json& v = member(object, key, where, false);
    if (v.is_null()) return std::nullopt;
    SAES_CHECK(v.is_number_integer(), DataError, "{}: {}.{}: expected an integer or null, got {}",
               name_, where, key, v.type_name());
    return v.get<std::int64_t>();
  }
  std::optional<double> opt_number(const json& object, const char* key,
                                   const std::string& where) const {
    const json& v = member(object, key, where, false);
    if (v.is_null()) return std::nullopt;
    SAES_CHECK(v.is_number(), DataError, "{}: {}.{}: expected a number or null, got {}", name_,
               where, key, v.type_name());
    return v.get<double>();
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};

JsonMetadata read_metadata(const Reader& r, const json& doc) {
  const json& m = r.member(doc, "metadata", "document");
  JsonMetadata out;
  out.slug = r.text(m, "slug", "metadata");
  out.scan = r.text(m, "scan", "metadata");
  out.prompt = r.text(m, "prompt", "metadata");
  const json& tokens = r.member(m, "prompt_tokens", "metadata");
  SAES_CHECK(tokens.is_array(), DataError, "{}: metadata.prompt_tokens: expected an array",
             r.name());
  for (const json& t : tokens) {
    SAES_CHECK(t.is_string(), DataError, "{}: metadata.prompt_tokens: expected strings, got {}",
               r.name(), t.type_name());
    out.prompt_tokens.push_back(t.get<std::string>());
  }
  out.schema_version = r.opt_integer(m, "schema_version", "metadata").value_or(0);
  out.node_threshold = r.opt_number(m, "node_threshold", "metadata");
  if (const json& p = r.member(m, "pruning_settings", "metadata", false); !p.is_null()) {
    if (!out.node_threshold)
      out.node_threshold = r.opt_number(p, "node_threshold", "pruning_settings");
    out.edge_threshold = r.opt_number(p, "edge_threshold", "pruning_settings");
  }
  if (const json& g = r.member(m, "generation_settings", "metadata", false); !g.is_null()) {
    out.max_n_logits = r.opt_integer(g, "max_n_logits", "generation_settings");
    out.desired_logit_prob = r.opt_number(g, "desired_logit_prob", "generation_settings");
    out.batch_size = r.opt_integer(g, "batch_size", "generation_settings");
    out.max_feature_nodes = r.opt_integer(g, "max_feature_nodes", "generation_settings");
  }
  if (const json& info = r.member(m, "info", "metadata", false); !info.is_null()) {
    if (const json& gen = r.member(info, "generator", "info", false); !gen.is_null()) {
      if (gen.contains("name")) out.generator_name = r.text(gen, "name", "info.generator");
      if (gen.contains("version")) out.generator_version = r.text(gen, "version", "info.generator");
    }
    if (const auto t = r.opt_number(info, "create_time_ms", "info"))
      out.create_time_ms = static_cast<std::int64_t>(*t);
  }
  return out;
}

JsonNode read_node(const Reader& r, const json& n, const std::string& where) {
  JsonNode out;
  out.node_id = r.text(n, "node_id", where);
  const json& feature = r.member(n, "feature", where);
  SAES_CHECK(feature.is_null() || feature.is_number_integer(), DataError,
             "{}: {}.feature: expected an integer or null, got {}", r.name(), where,
             feature.type_name());
  if (!feature.is_null()) out.feature = feature.get<std::int64_t>();
  const json& layer = r.member(n, "layer", where);
  SAES_CHECK(layer.is_string() || layer.is_number_integer(), DataError,
             "{}: {}.layer: expected a string or an integer, got {}", r.name(), where,
             layer.type_name());
  out.layer =
      layer.is_string() ? layer.get<std::string>() : std::to_string(layer.get<std::int64_t>());
  out.ctx_idx = r.integer(n, "ctx_idx", where);
  out.feature_type = r.text(n, "feature_type", where);
  out.js_node_id = r.text(n, "jsNodeId", where);
  out.clerp = r.text(n, "clerp", where);
  out.influence = r.opt_number(n, "influence", where);
  out.activation = r.opt_number(n, "activation", where);
  out.token_prob = r.opt_number(n, "token_prob", where).value_or(0.0);
  const json& target = r.member(n, "is_target_logit", where, false);
  SAES_CHECK(target.is_null() || target.is_boolean(), DataError,
             "{}: {}.is_target_logit: expected a boolean, got {}", r.name(), where,
             target.type_name());
  out.is_target_logit = target.is_boolean() && target.get<bool>();
  return out;
}

}  // namespace

GraphJson parse_graph_json(const std::string& text, const std::string& name) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  SAES_CHECK(!doc.is_discarded(), DataError, "{}: not valid JSON", name);
  SAES_CHECK(doc.is_object(), DataError, "{}: expected a JSON object at the top", name);
  const Reader r(name);
  GraphJson out;
  out.metadata = read_metadata(r, doc);
  r.member(doc, "qParams", "document");
  const json& nodes = r.member(doc, "nodes", "document");
  SAES_CHECK(nodes.is_array(), DataError, "{}: nodes: expected an array", name);
  for (std::size_t i = 0; i < nodes.size(); ++i)
    out.nodes.push_back(read_node(r, nodes[i], fmt::format("nodes[{}]", i)));
  const json& links = r.member(doc, "links", "document");
  SAES_CHECK(links.is_array(), DataError, "{}: links: expected an array", name);
  for (std::size_t i = 0; i < links.size(); ++i) {
    const std::string where = fmt::format("links[{}]", i);
    JsonLink l;
    l.source = r.text(links[i], "source", where);
    l.target = r.text(links[i], "target", where);
    const auto weight = r.opt_number(links[i], "weight", where);
    SAES_CHECK(weight.has_value(), DataError, "{}: {}.weight: expected a number", name, where);
    l.weight = *weight;
    out.links.push_back(std::move(l));
  }
  return out;
}

GraphJson read_graph_json(const std::filesystem::path& path) {
  return parse_graph_json(io::read_file(path), path.string());
}

}  // namespace saes::circuits
