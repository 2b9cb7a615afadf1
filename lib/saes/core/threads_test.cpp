// Tests of the thread-count policy and the BLAS check.
#include <ATen/Parallel.h>
#include <catch2/catch.hpp>

#include "saes/core/threads.h"

TEST_CASE("thread count defaults to the available cores, divided among local ranks", "[core]") {
  int before = at::get_num_threads();
  int cores = saes::available_cores();
  CHECK(cores >= 1);
  CHECK(saes::available_cores(1000) == 1);
  CHECK(saes::set_torch_threads(0) == cores);
  CHECK(at::get_num_threads() == cores);
  CHECK(saes::set_torch_threads(1) == 1);
  CHECK(at::get_num_threads() == 1);
  at::set_num_threads(before);
}

TEST_CASE("BLAS check names the loaded library and measures a GEMM", "[core]") {
  saes::BlasReport report = saes::check_blas();
  CHECK(report.gflops > 0.0);
  INFO("BLAS library: " << report.library << ", " << report.gflops << " GFLOP/s");
  // The reference BLAS is flagged by its Debian path; OpenBLAS is not.
  if (report.library.find("openblas") != std::string::npos) CHECK_FALSE(report.reference);
  if (report.library.find("/blas/libblas.so") != std::string::npos) CHECK(report.reference);
}
