// The evaluation step of saes-analyze; not implemented yet (issue #6).
#include "saes/runners/analyze_eval.h"

#include "saes/core/error.h"

namespace saes::runners {

std::map<std::string, double> run_analyze_eval(const config::AnalyzeSettings&,
                                               dictionaries::SparseDictionary&, RunContext&) {
  SAES_THROW(UnsupportedError, "evaluation is not implemented in this version yet (issue #6)");
}

}  // namespace saes::runners
