// SignalGuard: the SIGTERM/SIGUSR1 stop flag (the single process-global in saes, see header).
#include "saes/training/stop_signal.h"

#include <csignal>

#include "saes/core/error.h"

namespace saes::training {
namespace {

// -1: no guard installed; 0: installed, no signal; > 0: the signal that arrived.
volatile std::sig_atomic_t g_stop_signal = -1;

extern "C" void on_stop_signal(int signal_number) { g_stop_signal = signal_number; }

void install(int signal_number, struct sigaction* previous) {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  SAES_ASSERT(sigaction(signal_number, &action, previous) == 0, "sigaction({}) failed",
              signal_number);
}

}  // namespace

SignalGuard::SignalGuard() {
  SAES_ASSERT(g_stop_signal < 0, "only one SignalGuard may exist at a time");
  g_stop_signal = 0;
  install(SIGTERM, &previous_term_);
  install(SIGUSR1, &previous_usr1_);
}

SignalGuard::~SignalGuard() {
  sigaction(SIGTERM, &previous_term_, nullptr);
  sigaction(SIGUSR1, &previous_usr1_, nullptr);
  g_stop_signal = -1;
}

bool SignalGuard::requested() const { return g_stop_signal > 0; }

int SignalGuard::signal_number() const { return g_stop_signal > 0 ? g_stop_signal : 0; }

void SignalGuard::clear() { g_stop_signal = 0; }

}  // namespace saes::training
