// Tests of the TensorBoard event files: CRC-32C, the record framing, and the Events a writer
// leaves on disk, read back by a decoder written here from the format description (TFRecord
// framing with masked CRC-32C; protobuf wire format of Event/Summary/SessionLog) — not libprotobuf.
#include "saes/training/tensorboard.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <unistd.h>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

#include "support/temp_dir.h"

namespace fs = std::filesystem;
using saes::training::TensorBoardWriter;

namespace {

// ---- an independent reader -------------------------------------------------------------------

/// CRC-32C bit by bit (reflected Castagnoli polynomial), no table.
std::uint32_t reference_crc32c(std::string_view data) {
  std::uint32_t crc = 0xFFFFFFFFU;
  for (const char c : data) {
    crc ^= static_cast<unsigned char>(c);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78U & (0U - (crc & 1U)));
  }
  return ~crc;
}

std::uint32_t reference_mask(std::uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8U;
}

std::uint64_t read_le(std::string_view bytes, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

/// The records of a TFRecord file; throws std::runtime_error on a bad length or CRC.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) throw std::runtime_error("truncated record header");
    const std::string_view header(file.data() + at, 8);
    if (read_le(file, at + 8, 4) != reference_mask(reference_crc32c(header))) {
      throw std::runtime_error("length CRC mismatch");
    }
    const std::uint64_t n = read_le(file, at, 8);
    if (file.size() - at - 12 < n + 4) throw std::runtime_error("truncated record data");
    const std::string data = file.substr(at + 12, n);
    if (read_le(file, at + 12 + n, 4) != reference_mask(reference_crc32c(data))) {
      throw std::runtime_error("data CRC mismatch");
    }
    out.push_back(data);
    at += 12 + n + 4;
  }
  return out;
}

/// One protobuf field: number, wire type and its value (varint, fixed bits or bytes).
struct WireField {
  int number = 0;
  int type = 0;
  std::uint64_t integer = 0;  // varint, or the raw bits of a fixed32/fixed64
  std::string bytes;          // length-delimited
};

std::uint64_t read_varint(std::string_view s, std::size_t& at) {
  std::uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at >= s.size()) throw std::runtime_error("truncated varint");
    const auto b = static_cast<unsigned char>(s[at++]);
    v |= static_cast<std::uint64_t>(b & 0x7FU) << shift;
    if ((b & 0x80U) == 0) return v;
  }
  throw std::runtime_error("varint too long");
}

std::vector<WireField> read_fields(std::string_view s) {
  std::vector<WireField> out;
  std::size_t at = 0;
  while (at < s.size()) {
    const std::uint64_t key = read_varint(s, at);
    WireField f;
    f.number = static_cast<int>(key >> 3);
    f.type = static_cast<int>(key & 7U);
    if (f.type == 0) {
      f.integer = read_varint(s, at);
    } else if (f.type == 1 || f.type == 5) {
      const int n = f.type == 1 ? 8 : 4;
      if (s.size() - at < static_cast<std::size_t>(n)) throw std::runtime_error("truncated fixed");
      f.integer = read_le(s, at, n);
      at += static_cast<std::size_t>(n);
    } else if (f.type == 2) {
      const std::uint64_t n = read_varint(s, at);
      if (s.size() - at < n) throw std::runtime_error("truncated bytes");
      f.bytes = std::string(s.substr(at, n));
      at += n;
    } else {
      throw std::runtime_error("unexpected wire type " + std::to_string(f.type));
    }
    out.push_back(f);
  }
  return out;
}

struct DecodedEvent {
  double wall_time = 0;
  std::int64_t step = 0;
  std::optional<std::string> file_version;
  std::vector<std::pair<std::string, float>> scalars;  // Summary values, in order
  std::optional<std::int64_t> session_status;
};

DecodedEvent decode_event(const std::string& data) {
  DecodedEvent e;
  for (const WireField& f : read_fields(data)) {
    if (f.number == 1 && f.type == 1) {
      std::memcpy(&e.wall_time, &f.integer, sizeof(double));
    } else if (f.number == 2 && f.type == 0) {
      e.step = static_cast<std::int64_t>(f.integer);
    } else if (f.number == 3 && f.type == 2) {
      e.file_version = f.bytes;
    } else if (f.number == 5 && f.type == 2) {
      for (const WireField& v : read_fields(f.bytes)) {
        REQUIRE((v.number == 1 && v.type == 2));
        std::string tag;
        std::optional<float> value;
        for (const WireField& x : read_fields(v.bytes)) {
          if (x.number == 1 && x.type == 2) tag = x.bytes;
          if (x.number == 2 && x.type == 5) {
            const auto bits = static_cast<std::uint32_t>(x.integer);
            float fv = 0;
            std::memcpy(&fv, &bits, sizeof(float));
            value = fv;
          }
        }
        REQUIRE(value.has_value());  // simple_value is present even when it is 0
        e.scalars.emplace_back(tag, *value);
      }
    } else if (f.number == 7 && f.type == 2) {
      e.session_status = 0;
      for (const WireField& x : read_fields(f.bytes)) {
        if (x.number == 1 && x.type == 0) e.session_status = static_cast<std::int64_t>(x.integer);
      }
    } else {
      FAIL("unexpected Event field " << f.number << " of wire type " << f.type);
    }
  }
  return e;
}

std::vector<DecodedEvent> decode_file(const fs::path& path) {
  std::vector<DecodedEvent> out;
  for (const std::string& r : read_records(saes::io::read_file(path))) {
    out.push_back(decode_event(r));
  }
  return out;
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("crc32c gives the CRC-32C check value and the masked form", "[training][tensorboard]") {
  CHECK(saes::training::crc32c("123456789") == 0xE3069283U);
  CHECK(saes::training::crc32c("") == 0U);
  const std::string text = "brain.Event:2 and some more bytes \x01\xff";
  CHECK(saes::training::crc32c(text) == reference_crc32c(text));
  CHECK(saes::training::masked_crc32c(text) == reference_mask(reference_crc32c(text)));
  // rotate right by 15, plus the TFRecord delta
  const std::uint32_t crc = 0xE3069283U;
  CHECK(saes::training::masked_crc32c("123456789") ==
        static_cast<std::uint32_t>(((crc >> 15) | (crc << 17)) + 0xa282ead8U));
}

TEST_CASE("tfrecord_frame: length, its CRC, the data, its CRC", "[training][tensorboard]") {
  const std::string data = "hello";
  const std::string record = saes::training::tfrecord_frame(data);
  REQUIRE(record.size() == 8 + 4 + data.size() + 4);
  CHECK(read_le(record, 0, 8) == data.size());
  CHECK(read_le(record, 8, 4) == reference_mask(reference_crc32c(record.substr(0, 8))));
  CHECK(record.substr(12, data.size()) == data);
  CHECK(read_le(record, 12 + data.size(), 4) == reference_mask(reference_crc32c(data)));
  CHECK(read_records(record + saes::training::tfrecord_frame("")) ==
        std::vector<std::string>{"hello", ""});
  std::string corrupted = record;
  corrupted[13] ^= 1;
  CHECK_THROWS_WITH(read_records(corrupted), "data CRC mismatch");
}

TEST_CASE("TensorBoardWriter writes the file version, then one scalar Event per call",
          "[training][tensorboard]") {
  if (!saes::training::tensorboard_available()) {
    WARN("SKIPPED: this build has no protobuf (SAES_WITH_TENSORBOARD off)");
    return;
  }
  saes::testing::TempDir dir;
  const double t0 = 1'700'000'000.25;
  fs::path path;
  {
    TensorBoardWriter writer(dir.path(), std::nullopt, t0);
    path = writer.path();
    writer.write_scalars(5,
                         {{"losses/overall_loss", 0.125},
                          {"metrics/l0", 16.0},
                          {"zero", 0.0},
                          {"details/current_learning_rate", 4e-4}},
                         t0 + 1.5);
    // Flushed per record: the file is complete while the writer is still open.
    const auto events = decode_file(path);
    REQUIRE(events.size() == 2);
    writer.write_scalars(10, {{"losses/overall_loss", -2.5}, {"sparsity/k", 12.0}}, t0 + 3.0);
  }
  std::array<char, 256> host{};
  REQUIRE(gethostname(host.data(), host.size() - 1) == 0);
  CHECK(path.filename().string() == "events.out.tfevents.1700000000." + std::string(host.data()));

  const auto events = decode_file(path);
  REQUIRE(events.size() == 3);
  CHECK(events[0].file_version == std::optional<std::string>("brain.Event:2"));
  CHECK(events[0].wall_time == t0);
  CHECK(events[0].step == 0);
  CHECK(events[0].scalars.empty());

  CHECK_FALSE(events[1].file_version.has_value());
  CHECK(events[1].step == 5);
  CHECK(events[1].wall_time == t0 + 1.5);
  const std::vector<std::pair<std::string, float>> first = {
      {"losses/overall_loss", 0.125F},
      {"metrics/l0", 16.0F},
      {"zero", 0.0F},
      {"details/current_learning_rate", static_cast<float>(4e-4)}};
  CHECK(events[1].scalars == first);
  CHECK(events[2].step == 10);
  CHECK(events[2].wall_time == t0 + 3.0);
  const std::vector<std::pair<std::string, float>> second = {{"losses/overall_loss", -2.5F},
                                                             {"sparsity/k", 12.0F}};
  CHECK(events[2].scalars == second);
  CHECK_FALSE(events[2].session_status.has_value());
}

TEST_CASE("a resumed writer starts a new file with a SessionLog START and never overwrites",
          "[training][tensorboard]") {
  if (!saes::training::tensorboard_available()) {
    WARN("SKIPPED: this build has no protobuf (SAES_WITH_TENSORBOARD off)");
    return;
  }
  saes::testing::TempDir dir;
  const double t0 = 1'700'000'000.0;
  fs::path first_path;
  {
    TensorBoardWriter first(dir.path(), std::nullopt, t0);
    first.write_scalars(1, {{"a", 1.0}}, t0);
    first_path = first.path();
  }
  const std::string first_bytes = saes::io::read_file(first_path);
  // The same second: the name is taken, so the new file gets a suffix.
  TensorBoardWriter resumed(dir.path(), 7, t0 + 0.5);
  resumed.write_scalars(10, {{"a", 2.0}}, t0 + 1);
  CHECK(resumed.path() == fs::path(first_path.string() + ".1"));
  CHECK(saes::io::read_file(first_path) == first_bytes);
  CHECK(event_files(dir.path()) == std::vector<fs::path>{first_path, resumed.path()});

  const auto events = decode_file(resumed.path());
  REQUIRE(events.size() == 3);
  CHECK(events[0].file_version == std::optional<std::string>("brain.Event:2"));
  CHECK(events[1].session_status == std::optional<std::int64_t>(1));  // START
  CHECK(events[1].step == 8);  // the steps after the checkpoint at 7 are superseded
  CHECK(events[1].wall_time == t0 + 0.5);
  CHECK(events[2].step == 10);
  CHECK(events[2].scalars == std::vector<std::pair<std::string, float>>{{"a", 2.0F}});
}

TEST_CASE("TensorBoardWriter names the folder it cannot write to", "[training][tensorboard]") {
  if (!saes::training::tensorboard_available()) return;
  saes::testing::TempDir dir;
  CHECK_THROWS_AS(TensorBoardWriter(dir / "missing", std::nullopt, 1.0), saes::IoError);
  CHECK_THROWS_WITH(TensorBoardWriter(dir / "missing", std::nullopt, 1.0),
                    Catch::Contains("missing/events.out.tfevents.1."));
}
