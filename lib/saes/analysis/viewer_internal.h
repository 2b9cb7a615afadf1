// Helpers shared by the viewer's page files (viewer_html.cpp, viewer_pages.cpp); not a public API.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "saes/analysis/annotations.h"
#include "saes/analysis/store.h"

namespace saes::analysis::viewer {

/// Percent-encodes everything but unreserved characters (RFC 3986), for query values in links.
std::string url_encode(std::string_view text);
/// A number as the pages print it (4 significant digits).
std::string number(double value);
/// The HTML document around `body` (already HTML): title, navigation, stylesheet link.
/// `dictionary_nav` false: the navigation has no dictionary pages (the many-dictionary home).
std::string page(std::string_view title, std::string_view subtitle, std::string_view body,
                 bool dictionary_nav = true);
/// The embedded stylesheet served at /style.css.
const std::string& stylesheet();
/// The stylesheet without the shading-level classes.
const char* base_stylesheet();

/// Annotations of one dictionary (annotations.h), by feature id.
using AnnotationMap = std::map<std::int64_t, Annotation>;
/// The search and bookmark filters of `annotations` on `query`: a text search also lists the
/// features whose label or notes contain it (ASCII case-insensitive); `bookmarked_only` keeps
/// the bookmarks only.
void apply_annotations(FeatureQuery& query, const AnnotationMap& annotations, bool bookmarked_only);
/// The dictionary table's label cell of feature `id` (★ for a bookmark).
std::string annotation_cell(const AnnotationMap& annotations, std::int64_t id);
/// The feature page's form editing feature `id`'s annotation (POST /features/<id>/annotation).
std::string annotation_form(const AnnotationMap& annotations, std::int64_t id);

}  // namespace saes::analysis::viewer
