// Tests of checkpoint step lists, atomic checkpoint folders, pruning, trainer state and signals.
#include "saes/training/checkpoint.h"

#include <csignal>
#include <filesystem>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/training/stop_signal.h"

#include "support/temp_dir.h"

namespace fs = std::filesystem;
using saes::training::CheckpointSaveMode;
using saes::training::CheckpointStaging;

TEST_CASE("linear and log checkpoint steps are in steps and below the total", "[training]") {
  using saes::training::checkpoint_steps;
  CHECK(checkpoint_steps(CheckpointSaveMode::kLinear, 10, 976) ==
        std::vector<std::int64_t>{97, 194, 291, 388, 485, 582, 679, 776, 873, 970});
  CHECK(checkpoint_steps(CheckpointSaveMode::kLog, 10, 976) ==
        std::vector<std::int64_t>{2, 4, 8, 16, 32, 63, 124, 247, 491});
  CHECK(checkpoint_steps(CheckpointSaveMode::kLog, 4, 100) == std::vector<std::int64_t>{4, 10, 32});
  CHECK(checkpoint_steps(CheckpointSaveMode::kLinear, 0, 100).empty());
  CHECK(checkpoint_steps(CheckpointSaveMode::kLinear, 10, 5) ==
        std::vector<std::int64_t>{1, 2, 3, 4});
}

TEST_CASE("a checkpoint that fails mid-write leaves the previous one intact", "[training]") {
  saes::testing::TempDir run;
  {
    CheckpointStaging staging(run.path(), 5);
    saes::io::write_file_atomic(staging.dir() / "weights", "old");
    CHECK(staging.commit() == run.path() / "checkpoints" / "step_5");
  }
  try {
    CheckpointStaging staging(run.path(), 5);
    saes::io::write_file_atomic(staging.dir() / "weights", "new");
    throw std::runtime_error("disk full");
  } catch (const std::runtime_error&) {
  }
  try {
    CheckpointStaging staging(run.path(), 10);
    saes::io::write_file_atomic(staging.dir() / "weights", "partial");
    throw std::runtime_error("killed");
  } catch (const std::runtime_error&) {
  }
  CHECK(saes::io::read_file(run.path() / "checkpoints" / "step_5" / "weights") == "old");
  CHECK_FALSE(fs::exists(run.path() / "checkpoints" / "step_5.tmp"));
  CHECK_FALSE(fs::exists(run.path() / "checkpoints" / "step_10.tmp"));
  // A leftover staging folder (crash before the rename) is not a checkpoint.
  fs::create_directories(run.path() / "checkpoints" / "step_20.tmp");
  CHECK(saes::training::list_checkpoints(run.path()) == std::vector<std::int64_t>{5});
  {
    CheckpointStaging staging(run.path(), 5);
    saes::io::write_file_atomic(staging.dir() / "weights", "newer");
    staging.commit();
  }
  CHECK(saes::io::read_file(run.path() / "checkpoints" / "step_5" / "weights") == "newer");
}

TEST_CASE("prune_checkpoints keeps the newest N", "[training]") {
  saes::testing::TempDir run;
  for (int step : {3, 20, 7, 100}) {
    CheckpointStaging staging(run.path(), step);
    staging.commit();
  }
  CHECK(saes::training::list_checkpoints(run.path()) == std::vector<std::int64_t>{3, 7, 20, 100});
  saes::training::prune_checkpoints(run.path(), 0);
  CHECK(saes::training::list_checkpoints(run.path()).size() == 4);
  saes::training::prune_checkpoints(run.path(), 2);
  CHECK(saes::training::list_checkpoints(run.path()) == std::vector<std::int64_t>{20, 100});
}

TEST_CASE("trainer state round-trips through trainer_state.json", "[training]") {
  saes::testing::TempDir dir;
  saes::training::TrainerState s;
  s.cur_step = 12;
  s.cur_tokens = 12 * 2048;
  s.tokens_per_batch = 2048;
  s.schedule = {976, 100, 195, 97, 200, 0};
  s.checkpoint_steps = {97, 194};
  s.members = {"a", "b"};
  s.stream_state = R"({"shard": 3, "row": 17})";
  saes::training::save_trainer_state(dir.path(), s);
  CHECK(saes::training::load_trainer_state(dir.path()) == s);
  saes::io::write_file_atomic(dir / "trainer_state.json", R"({"format": "saes-trainer-state"})");
  CHECK_THROWS_AS(saes::training::load_trainer_state(dir.path()), saes::DataError);
}

TEST_CASE("SIGTERM and SIGUSR1 set the stop flag of the signal guard", "[training]") {
  saes::training::SignalGuard guard;
  CHECK_FALSE(guard.requested());
  std::raise(SIGUSR1);
  CHECK(guard.requested());
  CHECK(guard.signal_number() == SIGUSR1);
  guard.clear();
  std::raise(SIGTERM);
  CHECK(guard.signal_number() == SIGTERM);
  CHECK_THROWS_AS(saes::training::SignalGuard(), saes::InternalError);
}
