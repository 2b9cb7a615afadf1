// The viewer's router (analysis::handle_request) over a small analysis database written at start:
// the input is `path[?query]` (query: key=value pairs joined by '&', given already decoded, as the
// server hands them over). Every request is answered 200, 400 or 404 without an exception (the
// server would turn one into a 500), and a query value containing "<fz" is never echoed unescaped.
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "saes/analysis/store.h"
#include "saes/analysis/viewer_pages.h"

namespace {

using namespace saes::analysis;

std::filesystem::path make_db() {
  AnalysisRecord r;
  r.meta = {{"sae_name", "fuzz <b>"}, {"hook_point", "blocks.0.hook_resid_post"}};
  r.n_analyzed_tokens = 400;
  r.n_contexts = 40;
  r.bands = {{"top_activations", 1.0, 3, 0}, {"non_activating", 0.0, 2, 0}};
  r.feature_layers = 2;
  r.target_hooks = {"blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"};
  const int d_sae = 8;
  for (int i = 0; i < d_sae; ++i) {
    FeatureStats f;
    f.act_times = i * 7;
    f.max_act = i * 0.5;
    f.mean_act = i * 0.25;
    f.histogram.assign(static_cast<std::size_t>(r.histogram.bins), i);
    f.samples.resize(r.bands.size());
    if (i % 3 != 0) {
      SampledContext c;
      c.score = static_cast<float>(f.max_act);
      c.tokens = {1, 2, 3, 4};
      c.positions = {0, 1, 2, 3};
      c.values = {0.f, static_cast<float>(f.max_act), 0.1f, -1.f};
      f.samples[0].push_back(c);
    }
    r.features.push_back(f);
    LogitLens lens;
    lens.top_tokens = {1, 2};
    lens.top_values = {2.f, 1.f};
    lens.bottom_tokens = {3};
    lens.bottom_values = {-1.f};
    r.logit_lens.push_back(lens);
    const int first = i < d_sae / 2 ? 0 : 1;
    r.target_decoder_norms.push_back({first == 0 ? 1.0 : 0.0, 0.5});
  }
  r.decoder_cosine = NearestRow{std::vector<float>(d_sae, 0.5f), std::vector<std::int64_t>(d_sae, 1)};
  r.vocab = {"<s>", "once", " <script>", "\xe2\x96\x81time", "&amp;"};
  r.eval = {{"metrics/explained_variance", 0.9}};
  const char* base = std::getenv("SAES_FUZZ_TMP");
  const auto path = std::filesystem::path(base ? base : "/dev/shm") /
                    ("saes-fuzz-viewer-" + std::to_string(::getpid()) + ".sqlite");
  std::filesystem::remove(path);
  write_analysis_db(path, r);
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const AnalysisStore store(make_db());
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto question = input.find('?');
  const std::string path(input.substr(0, question));
  QueryParams params;
  std::vector<std::string> watched;
  if (question != std::string_view::npos) {
    std::string_view query = input.substr(question + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      const auto eq = pair.find('=');
      const std::string value(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
      params[std::string(pair.substr(0, eq))] = value;
      if (value.find("<fz") != std::string::npos) watched.push_back(value);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
  }
  PageResponse page;
  try {
    page = handle_request(store, path, params);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_viewer: %s -> exception (a 500): %s\n", path.c_str(), e.what());
    std::abort();
  }
  if (page.status != 200 && page.status != 400 && page.status != 404) {
    std::fprintf(stderr, "fuzz_viewer: status %d\n", page.status);
    std::abort();
  }
  for (const auto& value : watched) {
    if (page.content_type.find("html") != std::string::npos &&
        page.body.find(value) != std::string::npos) {
      std::fprintf(stderr, "fuzz_viewer: query value echoed unescaped\n");
      std::abort();
    }
  }
  return 0;
}
