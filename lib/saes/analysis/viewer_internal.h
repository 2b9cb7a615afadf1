// Helpers shared by the viewer's page files (viewer_html.cpp, viewer_pages.cpp); not a public API.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace saes::analysis::viewer
