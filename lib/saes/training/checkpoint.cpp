// Checkpoint step lists, atomic checkpoint folders, pruning and trainer_state.json.
#include "saes/training/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <system_error>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace fs = std::filesystem;

namespace saes::training {
namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kStepPrefix = "step_";

// Steps encoded in a `step_<N>` folder name; nullopt for anything else (e.g. `step_5.tmp`).
std::optional<std::int64_t> parse_step_name(const std::string& name) {
  const std::string prefix = kStepPrefix;
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return std::nullopt;
  std::int64_t step = 0;
  for (std::size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void remove_all_or_throw(const fs::path& path) {
  std::error_code ec;
  io::remove_tree(path, ec);
  SAES_CHECK(!ec, IoError, "cannot remove {}: {}", path.string(), ec.message());
}

}  // namespace

std::vector<std::int64_t> checkpoint_steps(CheckpointSaveMode mode, std::int64_t n_checkpoints,
                                           std::int64_t total_steps) {
  std::vector<std::int64_t> steps;
  if (n_checkpoints <= 0 || total_steps <= 1) return steps;
  if (mode == CheckpointSaveMode::kLinear) {
    const std::int64_t interval = std::max<std::int64_t>(1, total_steps / n_checkpoints);
    for (std::int64_t s = interval; s < total_steps; s += interval) steps.push_back(s);
    return steps;
  }
  const double log_total = std::log2(static_cast<double>(total_steps));
  for (std::int64_t i = 1; i < n_checkpoints; ++i) {
    const double exponent = static_cast<double>(i) / static_cast<double>(n_checkpoints) * log_total;
    const auto s = static_cast<std::int64_t>(std::ceil(std::pow(2.0, exponent)));
    if (s > 0 && s < total_steps && (steps.empty() || steps.back() != s)) steps.push_back(s);
  }
  return steps;
}

fs::path checkpoint_path(const fs::path& run_dir, std::int64_t step) {
  return run_dir / "checkpoints" / (kStepPrefix + std::to_string(step));
}

std::vector<std::int64_t> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::int64_t> steps;
  const fs::path dir = run_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return steps;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory()) continue;
    if (auto step = parse_step_name(entry.path().filename().string())) steps.push_back(*step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

void prune_checkpoints(const fs::path& run_dir, std::int64_t keep_last) {
  if (keep_last <= 0) return;
  const std::vector<std::int64_t> steps = list_checkpoints(run_dir);
  const auto n_remove = static_cast<std::int64_t>(steps.size()) - keep_last;
  for (std::int64_t i = 0; i < n_remove; ++i)
    remove_all_or_throw(checkpoint_path(run_dir, steps[i]));
}

CheckpointStaging::CheckpointStaging(const fs::path& run_dir, std::int64_t step)
    : final_(checkpoint_path(run_dir, step)) {
  staging_ = final_;
  staging_ += ".tmp";
  remove_all_or_throw(staging_);
  std::error_code ec;
  fs::create_directories(staging_, ec);
  SAES_CHECK(!ec, IoError, "cannot create checkpoint folder {}: {}", staging_.string(),
             ec.message());
}

CheckpointStaging::~CheckpointStaging() {
  if (committed_) return;
  std::error_code ec;
  io::remove_tree(staging_, ec);
}

fs::path CheckpointStaging::commit() {
  SAES_ASSERT(!committed_, "checkpoint {} committed twice", final_.string());
  std::error_code ec;
  fs::path old = final_;
  old += ".old";
  if (fs::exists(final_, ec)) {
    remove_all_or_throw(old);
    fs::rename(final_, old, ec);
    SAES_CHECK(!ec, IoError, "cannot move {} aside: {}", final_.string(), ec.message());
  }
  fs::rename(staging_, final_, ec);
  SAES_CHECK(!ec, IoError, "cannot rename {} to {}: {}", staging_.string(), final_.string(),
             ec.message());
  committed_ = true;
  sync_directory(final_.parent_path());
  io::remove_tree(old, ec);
  return final_;
}

void save_trainer_state(const fs::path& checkpoint_dir, const TrainerState& s) {
  nlohmann::ordered_json j;
  j["format"] = "saes-trainer-state";
  j["version"] = 1;
  j["cur_step"] = s.cur_step;
  j["cur_tokens"] = s.cur_tokens;
  j["tokens_per_batch"] = s.tokens_per_batch;
  j["total_training_steps"] = s.schedule.total;
  j["lr_warm_up_steps"] = s.schedule.lr_warm_up;
  j["lr_cool_down_steps"] = s.schedule.lr_cool_down;
  j["l1_coefficient_warmup_steps"] = s.schedule.l1_warm_up;
  j["k_warmup_steps"] = s.schedule.k_warm_up;
  j["k_cold_booting_steps"] = s.schedule.k_cold_boot;
  j["checkpoint_thresholds"] = s.checkpoint_steps;
  j["members"] = s.members;
  j["stream_state"] = s.stream_state;
  io::write_file_atomic(checkpoint_dir / kStateFile, j.dump(2) + "\n");
}

TrainerState load_trainer_state(const fs::path& checkpoint_dir) {
  const fs::path path = checkpoint_dir / kStateFile;
  const std::string text = io::read_file(path);
  const auto j = nlohmann::json::parse(text, nullptr, false);
  SAES_CHECK(!j.is_discarded() && j.is_object(), DataError, "{}: not a JSON object", path.string());
  SAES_CHECK(j.value("format", "") == "saes-trainer-state", DataError,
             "{}: expected format 'saes-trainer-state'", path.string());
  const auto get = [&](const char* key) -> const nlohmann::json& {
    SAES_CHECK(j.contains(key), DataError, "{}: missing key '{}'", path.string(), key);
    return j.at(key);
  };
  TrainerState s;
  try {
    s.cur_step = get("cur_step").get<std::int64_t>();
    s.cur_tokens = get("cur_tokens").get<std::int64_t>();
    s.tokens_per_batch = get("tokens_per_batch").get<std::int64_t>();
    s.schedule.total = get("total_training_steps").get<std::int64_t>();
    s.schedule.lr_warm_up = get("lr_warm_up_steps").get<std::int64_t>();
    s.schedule.lr_cool_down = get("lr_cool_down_steps").get<std::int64_t>();
    s.schedule.l1_warm_up = get("l1_coefficient_warmup_steps").get<std::int64_t>();
    s.schedule.k_warm_up = get("k_warmup_steps").get<std::int64_t>();
    s.schedule.k_cold_boot = get("k_cold_booting_steps").get<std::int64_t>();
    s.checkpoint_steps = get("checkpoint_thresholds").get<std::vector<std::int64_t>>();
    s.members = get("members").get<std::vector<std::string>>();
    s.stream_state = get("stream_state").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}: {}", path.string(), e.what());
  }
  return s;
}

}  // namespace saes::training
