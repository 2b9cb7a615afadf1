// Benchmark: save_safetensors / SafetensorsFile against plain fwrite/fread/memcpy of the same
// bytes. Usage: bench_safetensors_io [folder] [total_mb]   (defaults: $TMPDIR or /tmp, 256 MB: half
// f32, half bf16). Prints the best of 3 runs per operation. Reads hit the warm page cache (the
// files were just written), so they measure the in-memory path, not the disk.
#include <ATen/core/Tensor.h>
#include <ATen/ops/rand.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "saes/core/error.h"
#include "saes/io/safetensors.h"

namespace {

namespace fs = std::filesystem;
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

constexpr int kRepeats = 3;
constexpr int kTensorsPerDtype = 4;

double best_seconds(const std::function<void()>& run) {
  double best = 1e30;
  for (int i = 0; i < kRepeats; ++i) {
    auto start = std::chrono::steady_clock::now();
    run();
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

NamedTensors make_tensors(std::size_t total_bytes) {
  NamedTensors out;
  const auto f32_elems = static_cast<std::int64_t>(total_bytes / 2 / kTensorsPerDtype / 4);
  const auto bf16_elems = static_cast<std::int64_t>(total_bytes / 2 / kTensorsPerDtype / 2);
  for (int i = 0; i < kTensorsPerDtype; ++i) {
    out.emplace_back(fmt::format("f32.{}", i), at::rand({f32_elems}));
    out.emplace_back(fmt::format("bf16.{}", i), at::rand({bf16_elems}).to(at::kBFloat16));
  }
  return out;
}

// Baseline write: the same bytes with fwrite, then fsync like the atomic writer.
void plain_write(const fs::path& path, const NamedTensors& tensors) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  SAES_CHECK(file != nullptr, saes::IoError, "{}: cannot open", path.string());
  for (const auto& [name, tensor] : tensors)
    std::fwrite(tensor.data_ptr(), 1, tensor.nbytes(), file);
  std::fflush(file);
  fsync(fileno(file));
  std::fclose(file);
}

void plain_read(const fs::path& path, std::vector<char>& buffer) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  SAES_CHECK(file != nullptr, saes::IoError, "{}: cannot open", path.string());
  std::size_t got = std::fread(buffer.data(), 1, buffer.size(), file);
  std::fclose(file);
  SAES_CHECK(got == buffer.size(), saes::IoError, "{}: short read", path.string());
}

void print_row(const std::string& op, double mb, double seconds, double baseline_seconds,
               const std::string& baseline) {
  fmt::print("{:<34} {:>8.1f} {:>9.4f} {:>8.2f} {:>10.2f}  {}\n", op, mb, seconds,
             mb / 1024.0 / seconds, seconds / baseline_seconds, baseline);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const fs::path folder = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path();
    const std::size_t total_mb = argc > 2 ? std::stoul(argv[2]) : 256;
    const NamedTensors tensors = make_tensors(total_mb << 20);
    std::size_t n_bytes = 0;
    for (const auto& entry : tensors) n_bytes += entry.second.nbytes();
    const double mb = static_cast<double>(n_bytes) / (1 << 20);
    const fs::path ours = folder / fmt::format("saes_bench_{}.safetensors", getpid());
    const fs::path plain = folder / fmt::format("saes_bench_{}.raw", getpid());
    std::vector<char> buffer(n_bytes);

    double t_memcpy = best_seconds([&] {
      std::size_t at = 0;
      for (const auto& entry : tensors) {
        std::memcpy(buffer.data() + at, entry.second.data_ptr(), entry.second.nbytes());
        at += entry.second.nbytes();
      }
    });
    double t_fwrite = best_seconds([&] { plain_write(plain, tensors); });
    double t_save = best_seconds([&] { saes::io::save_safetensors(ours, tensors); });
    double t_fread = best_seconds([&] { plain_read(plain, buffer); });
    double t_copy = best_seconds([&] {
      auto file = saes::io::SafetensorsFile::open(ours);
      for (const auto& name : file.names()) file.tensor(name, saes::io::TensorLoad::kCopy);
    });
    double t_view_touch = best_seconds([&] {
      auto file = saes::io::SafetensorsFile::open(ours);
      std::size_t at = 0;
      for (const auto& name : file.names()) {
        at::Tensor view = file.tensor(name);
        std::memcpy(buffer.data() + at, view.data_ptr(), view.nbytes());
        at += view.nbytes();
      }
    });
    double t_view = best_seconds([&] {
      auto file = saes::io::SafetensorsFile::open(ours);
      for (const auto& name : file.names()) file.tensor(name);
    });

    fmt::print("safetensors I/O, {:.0f} MB ({} f32 + {} bf16 tensors), best of {}, folder {}\n", mb,
               kTensorsPerDtype, kTensorsPerDtype, kRepeats, folder.string());
    fmt::print("{:<34} {:>8} {:>9} {:>8} {:>10}  {}\n", "operation", "MB", "seconds", "GB/s",
               "x baseline", "baseline");
    print_row("memcpy (baseline)", mb, t_memcpy, t_memcpy, "memcpy");
    print_row("fwrite + fsync (baseline)", mb, t_fwrite, t_fwrite, "fwrite + fsync");
    print_row("save_safetensors (atomic)", mb, t_save, t_fwrite, "fwrite + fsync");
    print_row("fread (baseline, warm cache)", mb, t_fread, t_fread, "fread");
    print_row("open + tensor(kCopy)", mb, t_copy, t_fread, "fread");
    print_row("open + tensor(kView) + memcpy", mb, t_view_touch, t_fread, "fread");
    print_row("open + tensor(kView), untouched", mb, t_view, t_memcpy, "memcpy");
    fs::remove(ours);
    fs::remove(plain);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_safetensors_io: {}\n", e.what());
    return 1;
  }
}
