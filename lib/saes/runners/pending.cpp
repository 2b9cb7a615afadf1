// Runners whose pipelines have not landed yet: they validate nothing beyond the config and say
// plainly which issue brings them (exit code 5), rather than pretending to work.
#include "saes/core/error.h"
#include "saes/runners/runners.h"

namespace saes::runners {

int run_analyze(const config::AnalyzeSettings&, RunContext&) {
  SAES_THROW(UnsupportedError,
             "analysis is not implemented in this version yet (issue #6); the config was valid");
}

}  // namespace saes::runners
