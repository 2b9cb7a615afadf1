// The viewer's live-inference pages (viewer_live.h): the text box, the shaded tokens with their
// top features, a feature page's shading of the user's text, and the JSON twin.
#include "saes/analysis/viewer_live.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/analysis/viewer_internal.h"
#include "saes/core/error.h"

namespace saes::analysis {
namespace {

using viewer::number;

PageResponse html_error(int status, std::string_view title, std::string_view message) {
  return {status, "text/html; charset=utf-8",
          viewer::page(title, "",
                       fmt::format("<h1>{}</h1><p class=\"live-error\">{}</p>", status,
                                   html_escape(message)))};
}

/// The text box: GET `action` with `text` (and the current text in it).
std::string text_form(std::string_view action, std::string_view text, std::string_view label) {
  return fmt::format(
      "<form class=\"live\" method=\"get\" action=\"{}\"><label>{} <textarea name=\"text\" "
      "rows=\"2\" maxlength=\"{}\" placeholder=\"type a text to run through the model\">{}"
      "</textarea></label> <button>Run</button></form>",
      action, label, kMaxLiveTextBytes, html_escape(text));
}

/// `page` with `html` inserted after its first </h1> (where the page's title ends).
std::string insert_after_title(std::string page, const std::string& html) {
  const std::size_t at = page.find("</h1>");
  if (at == std::string::npos) return page;
  return page.insert(at + 5, html);
}

/// The user's text, or the refusal of an empty or too long one.
std::optional<std::string> text_param(const QueryParams& params, PageResponse& refusal) {
  const auto it = params.find("text");
  if (it == params.end()) return std::nullopt;
  if (it->second.empty()) {
    refusal = html_error(400, "Bad request", "text: type something to run");
    return std::nullopt;
  }
  if (it->second.size() > kMaxLiveTextBytes) {
    refusal = html_error(400, "Bad request",
                         fmt::format("text: {} bytes, the limit is {}", it->second.size(),
                                     kMaxLiveTextBytes));
    return std::nullopt;
  }
  return it->second;
}

/// Runs `live`, turning its errors into a 400 (a refused text) or a 503 (cannot run).
std::optional<LiveTokens> run(const LiveInference& live, const std::string& text,
                              std::optional<std::int64_t> feature, PageResponse& refusal) {
  try {
    return live(text, feature);
  } catch (const DataError& e) {
    refusal = html_error(400, "Bad request", e.what());
  } catch (const Error& e) {
    refusal = html_error(503, "Live inference unavailable", e.what());
  }
  return std::nullopt;
}

std::string feature_link(std::int64_t id) {
  return fmt::format("<a href=\"/features/{0}\">#{0}</a>", id);
}

PageResponse infer_page(const std::string& text, const LiveTokens& r) {
  float largest = 0.0F;
  for (const auto& t : r.top)
    if (!t.empty()) largest = std::max(largest, t.front().second);
  std::string toks, rows;
  for (std::size_t i = 0; i < r.tokens.size(); ++i) {
    const std::string tok = html_escape(r.tokens[i]);
    const auto& top = r.top[i];
    std::string tip, links;
    for (const auto& [id, act] : top) {
      tip += fmt::format("{}#{}: {}", tip.empty() ? "" : ", ", id, number(act));
      links += fmt::format("{}{} <span class=\"muted\">{}</span>", links.empty() ? "" : " · ",
                           feature_link(id), number(act));
    }
    const int level = top.empty() ? 0 : activation_level(top.front().second, largest);
    toks += level == 0 ? fmt::format("<span class=\"t\">{}</span>", tok)
                       : fmt::format("<span class=\"t a{}\" title=\"{}: {}\">{}</span>", level,
                                     tok, html_escape(tip), tok);
    rows += fmt::format("<tr><td>{}</td><td class=\"tok\"><code>{}</code></td><td>{}</td></tr>\n",
                        i, tok, links.empty() ? "<span class=\"muted\">none</span>" : links);
  }
  std::string body = "<h1>Your text</h1>" + text_form("/infer", text, "text") +
                     fmt::format("<p>{} tokens; each shaded by its strongest feature (relative to "
                                 "the strongest in the text).</p><div class=\"toks live\">{}</div>",
                                 r.tokens.size(), toks) +
                     "<table class=\"features live\"><thead><tr><th>position</th><th class=\"tok\">"
                     "token</th><th>top features</th></tr></thead><tbody>\n" +
                     rows + "</tbody></table>";
  return {200, "text/html; charset=utf-8", viewer::page("Your text", "", body)};
}

/// The feature page's section for the user's text: its tokens shaded by this feature.
std::string feature_section(const std::string& text, std::int64_t id, double max_act,
                            const LiveTokens& r) {
  float peak = 0.0F;
  for (const float v : r.feature) peak = std::max(peak, v);
  const double scale = max_act > 0 ? max_act : peak;
  std::string toks;
  for (std::size_t i = 0; i < r.tokens.size() && i < r.feature.size(); ++i) {
    const std::string tok = html_escape(r.tokens[i]);
    const int level = activation_level(r.feature[i], scale);
    toks += level == 0 ? fmt::format("<span class=\"t\">{}</span>", tok)
                       : fmt::format("<span class=\"t a{}\" title=\"{}: {}\">{}</span>", level, tok,
                                     number(r.feature[i]), tok);
  }
  return fmt::format(
      "<section class=\"live\"><h2>Your text</h2>{}<p>peak {} (shaded relative to the feature's "
      "max activation {})</p><div class=\"toks live\">{}</div></section>",
      text_form(fmt::format("/features/{}", id), text, "text"), number(peak), number(scale), toks);
}

nlohmann::json live_json(const LiveTokens& r) {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& t : r.top) {
    nlohmann::json row = nlohmann::json::array();
    for (const auto& [id, act] : t) row.push_back({id, act});
    top.push_back(std::move(row));
  }
  nlohmann::json j = {{"tokens", r.tokens}, {"top", std::move(top)}};
  if (!r.feature.empty()) j["feature"] = r.feature;
  return j;
}

constexpr const char* kNoLive =
    "live inference is not available: this viewer was started without a model";

}  // namespace

std::optional<PageResponse> handle_live_request(
    const AnalysisStore& store, const LiveInference* live, std::string_view path,
    const QueryParams& params, const std::map<std::int64_t, Annotation>* annotations) {
  const bool api = path == "/api/infer";
  PageResponse refusal;
  if (path == "/infer" || api) {
    if (live == nullptr) return html_error(503, "Live inference unavailable", kNoLive);
    const auto text = text_param(params, refusal);
    if (!text) {
      if (refusal.status != 200) return refusal;
      if (api) return html_error(400, "Bad request", "text: missing");
      return PageResponse{200, "text/html; charset=utf-8",
                          viewer::page("Your text", "",
                                       "<h1>Your text</h1>" + text_form("/infer", "", "text"))};
    }
    std::optional<std::int64_t> feature;
    if (const auto it = params.find("feature"); api && it != params.end()) {
      feature = parse_feature_id(it->second, store.d_sae());
      if (!feature) return html_error(400, "Bad request", "feature: not a feature id");
    }
    const auto r = run(*live, *text, feature, refusal);
    if (!r) return refusal;
    if (api) return PageResponse{200, "application/json", live_json(*r).dump()};
    return infer_page(*text, *r);
  }
  if (live == nullptr) return std::nullopt;  // the pages as they are, without a text box
  if (path == "/") {
    PageResponse page = handle_request(store, path, params, annotations);
    if (page.status == 200) {
      page.body = insert_after_title(std::move(page.body),
                                     text_form("/infer", "", "Run your own text:"));
    }
    return page;
  }
  constexpr std::string_view kFeature = "/features/";
  if (path.substr(0, kFeature.size()) != kFeature) return std::nullopt;
  const auto id = parse_feature_id(path.substr(kFeature.size()), store.d_sae());
  if (!id) return std::nullopt;  // the feature routes answer it
  const auto text = text_param(params, refusal);
  if (!text && refusal.status != 200) return refusal;
  PageResponse page = handle_request(store, path, {}, annotations);
  if (page.status != 200) return page;
  std::string section;
  if (text) {
    const auto r = run(*live, *text, id, refusal);
    if (!r) return refusal;
    const auto detail = store.feature(*id);
    section = feature_section(*text, *id, detail ? detail->summary.max_act : 0.0, *r);
  } else {
    section = "<section class=\"live\"><h2>Your text</h2>" +
              text_form(fmt::format("/features/{}", *id), "", "shade a text for this feature:") +
              "</section>";
  }
  const std::size_t pager = page.body.find("</div>", page.body.find("</h1>"));
  if (pager == std::string::npos) return page;
  page.body.insert(pager + 6, section);
  return page;
}

}  // namespace saes::analysis
