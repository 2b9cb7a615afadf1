// listed_ids: the feature ids of a viewer dictionary page's table, in order (the viewer tests).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace saes::testing {

inline std::vector<std::int64_t> listed_ids(const std::string& html) {
  std::vector<std::int64_t> ids;
  const std::string marker = "<tr><td><a href=\"/features/";
  for (auto pos = html.find(marker); pos != std::string::npos; pos = html.find(marker, pos + 1)) {
    ids.push_back(std::stoll(html.substr(pos + marker.size(), 3)));
  }
  return ids;
}

}  // namespace saes::testing
