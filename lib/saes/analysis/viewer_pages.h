// The read-only web viewer's pages (docs/viewer.md) as pure functions of an AnalysisStore and the
// request: dictionary list, feature page (SVG histogram and charts, shaded contexts, logit lens),
// eval summary, their JSON twins, the stylesheet; every unknown route or bad id is a 404. No
// sockets here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace saes::analysis {

class AnalysisStore;
struct Annotation;
struct FeatureDetail;

/// One HTTP answer: status, MIME type and body.
struct PageResponse {
  int status = 200;
  std::string content_type = "text/html; charset=utf-8";
  std::string body;
  std::string location = {};  ///< a redirect's target (status 302), else empty
};

/// Query parameters of a request (already percent-decoded; the last value of a repeated key).
using QueryParams = std::map<std::string, std::string>;

/// Answers a GET of `path` (decoded, without the query string). Routes: `/` (dictionary page:
/// sort=id|frequency|max_act|mean_act|cosine, order=asc|desc, q=id or token text, page, per_page,
/// min_freq / max_freq / min_act / max_act (inclusive ranges of the frequency and the maximum
/// activation), layer (multi-layer dictionaries)), `/features/<id>`, `/features/random` (a 302 to
/// a random alive feature), `/eval`, `/style.css`, `/api/features` (same parameters),
/// `/api/features/<id>`, `/api/features/random`, `/api/eval`. Any other path (trailing slashes, `..`, encoded tricks) and any id that is not a
/// plain decimal in [0, d_sae) is a 404; a malformed query value is a 400.
PageResponse handle_request(const AnalysisStore& store, std::string_view path,
                            const QueryParams& params);
/// As above with the dictionary's annotations (annotations.h; the server was started with
/// `--annotations`): the dictionary table gains a label column (★ for bookmarks), `q` also
/// matches labels and notes, `bookmarked=1` lists the bookmarks only, and each feature page has
/// the form that edits its annotation (POST <feature page>/annotation).
PageResponse handle_request(const AnalysisStore& store, std::string_view path,
                            const QueryParams& params,
                            const std::map<std::int64_t, Annotation>* annotations);

/// Escapes & < > " ' for HTML text and attribute values.
std::string html_escape(std::string_view text);

/// A decimal feature id of at most 18 digits, nothing else (no sign, spaces or leading "+"), in
/// [0, d_sae); nullopt otherwise.
std::optional<std::int64_t> parse_feature_id(std::string_view text, std::int64_t d_sae);

/// An inline <svg> bar chart of `counts` over bins whose edges are `edges` (counts.size() + 1
/// values); bars carry a <title> with the bin range and count.
std::string histogram_svg(const std::vector<std::int64_t>& counts, const std::vector<double>& edges,
                          std::string_view x_label);

/// An inline <svg> horizontal bar chart: one labelled bar per value (scaled to the largest), the
/// value printed beside it and in the bar's <title>.
std::string bar_chart_svg(const std::vector<double>& values, const std::vector<std::string>& labels,
                          std::string_view title);

/// An inline <svg> heat map of an H×H matrix of cosines (row-major, H = labels.size()): cell
/// (a, b) filled with cosine_color, its value printed when H ≤ kHeatmapValuesUpTo, and a <title>
/// "label a × label b: cosine …, inner product …" (`inner_products`: the same layout); rows and
/// columns labelled, a legend of the scale −1 … 1 beside it. Labels are escaped.
std::string heatmap_svg(const std::vector<double>& cosines,
                        const std::vector<double>& inner_products,
                        const std::vector<std::string>& labels, std::string_view title);
inline constexpr std::size_t kHeatmapValuesUpTo = 8;

/// Fill colour ("#rrggbb") of a cosine on the heat map's diverging scale: blue at −1, white at 0,
/// red at 1 (clamped; grey for a non-finite value).
std::string cosine_color(double cosine);

/// Shading levels of a token's activation (classes a1 .. a20 of the stylesheet; 0: unshaded).
inline constexpr int kActivationLevels = 20;
/// round(kActivationLevels · value / max_act), clamped to 0 .. kActivationLevels (0 for a
/// non-finite value or max_act <= 0).
int activation_level(double value, double max_act);

/// Background colour (CSS rgba) of a token whose activation is `value`, for a feature whose
/// maximum is `max_act`: transparent at 0, saturated orange at the maximum.
std::string activation_color(double value, double max_act);

}  // namespace saes::analysis
