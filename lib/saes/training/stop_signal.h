// SignalGuard: SIGTERM / SIGUSR1 (SLURM pre-emption) set a flag that the trainer checks once per
// step, so it can write a checkpoint and exit 0. The flag is the one piece of process-global state
// in saes (a signal handler can reach nothing else); this RAII class owns it.
#pragma once

#include <signal.h>

namespace saes::training {

/// Installs handlers for SIGTERM and SIGUSR1 on construction and restores the previous ones on
/// destruction. At most one guard may exist at a time (a second throws InternalError).
class SignalGuard {
 public:
  SignalGuard();
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;
  /// A handled signal arrived since construction (or since clear()).
  bool requested() const;
  /// The signal number that arrived last, 0 if none.
  int signal_number() const;
  void clear();

 private:
  struct sigaction previous_term_ {};
  struct sigaction previous_usr1_ {};
};

}  // namespace saes::training
