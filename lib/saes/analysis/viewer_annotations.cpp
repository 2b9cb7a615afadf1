// The viewer's annotation pieces (viewer_internal.h): search and bookmark filters, the label cell
// of the dictionary table, and the feature page's form.
#include <fmt/format.h>

#include "saes/analysis/viewer_internal.h"
#include "saes/analysis/viewer_pages.h"

namespace saes::analysis::viewer {
namespace {

std::string lower(std::string text) {
  for (char& c : text)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

}  // namespace

void apply_annotations(FeatureQuery& query, const AnnotationMap& annotations,
                       bool bookmarked_only) {
  if (query.search && !query.search->empty()) {
    const std::string needle = lower(*query.search);
    for (const auto& [id, a] : annotations) {
      if (lower(a.label).find(needle) != std::string::npos ||
          lower(a.notes).find(needle) != std::string::npos) {
        query.search_ids.push_back(id);
      }
    }
  }
  if (bookmarked_only) {
    std::vector<std::int64_t> ids;
    for (const auto& [id, a] : annotations)
      if (a.bookmarked) ids.push_back(id);
    query.only_ids = std::move(ids);
  }
}

std::string annotation_cell(const AnnotationMap& annotations, std::int64_t id) {
  const auto it = annotations.find(id);
  if (it == annotations.end()) return "<td class=\"label\"></td>";
  const Annotation& a = it->second;
  return fmt::format("<td class=\"label\"{}>{}{}</td>",
                     a.notes.empty() ? "" : " title=\"" + html_escape(a.notes) + "\"",
                     a.bookmarked ? "<span class=\"star\" title=\"bookmarked\">★</span> " : "",
                     html_escape(a.label));
}

std::string annotation_form(const AnnotationMap& annotations, std::int64_t id) {
  const auto it = annotations.find(id);
  const Annotation a = it == annotations.end() ? Annotation{} : it->second;
  return fmt::format(
      "<form class=\"annotation\" method=\"post\" action=\"/features/{0}/annotation\">"
      "<h2>Interpretation</h2><label>label <input type=\"text\" name=\"label\" maxlength=\"{1}\" "
      "value=\"{2}\"></label> <label><input type=\"checkbox\" name=\"bookmarked\" value=\"1\"{3}> "
      "bookmark</label><br><label>notes <textarea name=\"notes\" rows=\"3\" maxlength=\"{4}\">{5}"
      "</textarea></label> <button>Save</button>{6}</form>",
      id, kMaxLabelBytes, html_escape(a.label), a.bookmarked ? " checked" : "", kMaxNotesBytes,
      html_escape(a.notes),
      a.updated.empty() ? "" : " <span class=\"muted\">saved " + html_escape(a.updated) + "</span>");
}

}  // namespace saes::analysis::viewer
