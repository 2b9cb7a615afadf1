# Finds every third-party dependency once; targets are linked by lib/, apps/ and tests/.
# Torch: Debian's libtorch is found without hints; a CUDA LibTorch from a pip PyTorch is found with
#   -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')".
find_package(Torch REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(fmt REQUIRED)
find_package(zstd REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
# OpenMP: LibTorch's at::parallel_for is a header template whose `#pragma omp parallel` compiles
# into our own kernels (the fused dense step, the selections, the sparse kernels); without -fopenmp
# it silently runs them on one thread. GCC's libgomp is the runtime Debian's LibTorch uses.
# -DSAES_WITH_OPENMP=OFF builds without (single-threaded kernels), e.g. should a LibTorch that
# bundles its own OpenMP runtime clash with the system's (docs/gpu.md).
option(SAES_WITH_OPENMP "compile our kernels with OpenMP (at::parallel_for runs them in parallel)" ON)
if(SAES_WITH_OPENMP)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
endif()
# Embedded results database of saes-analyze (lib/saes/io/sqlite.h). Debian: libsqlite3-dev.
find_package(SQLite3 REQUIRED)

# Tokenizers (lib/saes/lm): PCRE2 runs the pre-tokenizer regexes (\p{L}, \p{N}); utf8proc gives NFC/NFKC.
# Debian: libpcre2-dev, libutf8proc-dev. SentencePiece `.model` files are read natively: Debian's
# libsentencepiece bundles its own protobuf and crashes at load next to LibTorch's libprotobuf.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
# HTTP server of `saes-analyze serve` (lib/saes/runners/serve.cpp, the web viewer). Debian:
# libcpp-httplib-dev (a compiled library; its pkg-config flags must match how it was built).
pkg_check_modules(CPPHTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

# TensorBoard event files of saes-train (`logging.tensorboard`, lib/saes/training/tensorboard.cpp):
# the Event/Summary messages are compiled from lib/saes/training/tfevents.proto by protoc. Debian:
# libprotobuf-dev (the libprotobuf that Debian's LibTorch links too) and protobuf-compiler. AUTO
# builds without them when they are missing (logging.tensorboard: true is then refused, exit 5),
# e.g. should a LibTorch's own protobuf clash with the system's.
set(SAES_WITH_TENSORBOARD "AUTO" CACHE STRING "TensorBoard event files: AUTO (when protobuf and protoc are found), ON, OFF")
set(SAES_HAVE_TENSORBOARD OFF)
if(NOT SAES_WITH_TENSORBOARD STREQUAL "OFF")
  find_package(Protobuf)
  if(Protobuf_FOUND AND Protobuf_PROTOC_EXECUTABLE AND COMMAND protobuf_generate)
    set(SAES_HAVE_TENSORBOARD ON)
  elseif(SAES_WITH_TENSORBOARD STREQUAL "ON")
    message(FATAL_ERROR "SAES_WITH_TENSORBOARD=ON but protobuf or protoc was not found (Debian: libprotobuf-dev protobuf-compiler)")
  endif()
endif()

# fmt: a pip PyTorch (2.x) ships its own newer fmt headers (fmt/base.h: fmt >= 11) in its include
# folder, which comes first on the include path; compiling against those and linking the system's
# libfmt.so.9 would not link. With such a LibTorch use fmt header-only (consistent whichever
# headers are found). SAES_FMT_HEADER_ONLY=ON/OFF overrides the detection.
set(SAES_FMT_HEADER_ONLY "AUTO" CACHE STRING "fmt header-only: AUTO (when LibTorch bundles fmt >= 11), ON, OFF")
set(_saes_fmt_header_only OFF)
if(SAES_FMT_HEADER_ONLY STREQUAL "AUTO")
  foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)
    if(EXISTS "${_dir}/fmt/base.h")
      set(_saes_fmt_header_only ON)
    endif()
  endforeach()
elseif(SAES_FMT_HEADER_ONLY)
  set(_saes_fmt_header_only ON)
endif()
if(_saes_fmt_header_only)
  set(SAES_FMT_TARGET fmt::fmt-header-only)
else()
  set(SAES_FMT_TARGET fmt::fmt)
endif()

if(TARGET zstd::libzstd_shared)
  set(SAES_ZSTD_TARGET zstd::libzstd_shared)
else()
  set(SAES_ZSTD_TARGET zstd::libzstd_static)
endif()
if(TARGET yaml-cpp::yaml-cpp)
  set(SAES_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(SAES_YAML_TARGET yaml-cpp)
endif()

if(SAES_WITH_MPI)
  find_package(MPI REQUIRED COMPONENTS C)
endif()

# NCCL only makes sense with a CUDA-enabled torch.
set(SAES_HAVE_NCCL OFF)
if(NOT SAES_WITH_NCCL STREQUAL "OFF")
  if(TORCH_CUDA_LIBRARIES OR CUDA_FOUND OR TARGET torch_cuda OR TARGET CUDA::cudart)
    find_package(NCCL)
    if(NCCL_FOUND)
      set(SAES_HAVE_NCCL ON)
    endif()
  endif()
  if(SAES_WITH_NCCL STREQUAL "ON" AND NOT SAES_HAVE_NCCL)
    message(FATAL_ERROR "SAES_WITH_NCCL=ON but NCCL (or a CUDA torch) was not found; set NCCL_ROOT")
  endif()
endif()
message(STATUS "saes: torch ${Torch_VERSION}, MPI ${SAES_WITH_MPI}, NCCL ${SAES_HAVE_NCCL}, TensorBoard ${SAES_HAVE_TENSORBOARD}, PCH ${SAES_PCH}, fmt ${SAES_FMT_TARGET}")
