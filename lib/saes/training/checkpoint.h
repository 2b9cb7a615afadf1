// Run-folder checkpoints (spec §5.1, §5.7): periodic step lists (linear and log, both in steps),
// atomic `checkpoints/step_<N>/` folders (staged in `step_<N>.tmp/`, then renamed), keep-last-N
// pruning, and the trainer's own state file (`trainer_state.json`). Layout in docs/training.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "saes/training/config.h"
#include "saes/training/schedules.h"

namespace saes::training {

/// Steps after which a periodic checkpoint is written (0 < step < total, ascending, unique).
/// linear: multiples of max(1, T / n) below T (upstream's range(0, T, T//n)[1:]);
/// log: ceil(2^(i/n · log2 T)) for i = 1..n-1 — in steps (upstream multiplies by the batch size
/// and then compares with the step counter, so its log snapshots never fire). n <= 0: none.
std::vector<std::int64_t> checkpoint_steps(CheckpointSaveMode mode, std::int64_t n_checkpoints,
                                           std::int64_t total_steps);

/// `<run_dir>/checkpoints/step_<step>`.
std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, std::int64_t step);
/// Steps of the complete checkpoints in `<run_dir>/checkpoints`, ascending (staging folders and
/// other entries are ignored).
std::vector<std::int64_t> list_checkpoints(const std::filesystem::path& run_dir);
/// Removes all but the newest `keep_last` complete checkpoints (keep_last <= 0: keeps all).
void prune_checkpoints(const std::filesystem::path& run_dir, std::int64_t keep_last);

/// A checkpoint being written: files go into dir() = `step_<N>.tmp/` (emptied first); commit()
/// renames it to `step_<N>/` (replacing an older folder of that step) and syncs the parent, so a
/// crash at any point leaves either the previous state or the complete new checkpoint. Destroying
/// without commit() removes the staging folder.
class CheckpointStaging {
 public:
  CheckpointStaging(const std::filesystem::path& run_dir, std::int64_t step);
  ~CheckpointStaging();
  CheckpointStaging(const CheckpointStaging&) = delete;
  CheckpointStaging& operator=(const CheckpointStaging&) = delete;
  const std::filesystem::path& dir() const { return staging_; }
  /// Returns the final folder. Throws IoError if the rename fails.
  std::filesystem::path commit();

 private:
  std::filesystem::path staging_;
  std::filesystem::path final_;
  bool committed_ = false;
};

/// The trainer's counters and resolved schedule, stored as `trainer_state.json` in a checkpoint.
struct TrainerState {
  std::int64_t cur_step = 0;
  std::int64_t cur_tokens = 0;
  std::int64_t tokens_per_batch = 0;
  ScheduleSteps schedule;
  std::vector<std::int64_t> checkpoint_steps;
  std::vector<std::string> members;  ///< dictionary names (sub-folders), in order
  std::string stream_state;          ///< the activation stream's opaque resume state
  bool operator==(const TrainerState&) const = default;
};

void save_trainer_state(const std::filesystem::path& checkpoint_dir, const TrainerState& state);
/// Throws IoError if the file is missing, DataError (naming the file and key) if malformed.
TrainerState load_trainer_state(const std::filesystem::path& checkpoint_dir);

}  // namespace saes::training
