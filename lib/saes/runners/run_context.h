// RunContext: the runtime facts a runner needs besides its settings (style.md §B6): logger,
// world communicator, progress display. Never serialized as hyperparameters.
#pragma once

#include <cstdint>
#include <string>

#include "saes/core/logging.h"

namespace saes::distributed {
class Communicator;
}

namespace saes::runners {

struct RunContext {
  Logger& logger;
  distributed::Communicator& world;
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 30.0;

  /// A Progress reporter honouring the run's progress settings.
  Progress make_progress(std::string label, std::int64_t total, std::string unit) const {
    return Progress(logger, std::move(label), total, std::move(unit), progress, progress_interval_s);
  }
};

}  // namespace saes::runners
