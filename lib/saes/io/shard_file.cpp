// Shard file encode/decode: frames compressed/decompressed on a few threads, each with its own zstd
// context and shuffle scratch buffer; the writer records each frame's CRC-32C before and after the
// codec, the reader checks the stored one always and the decoded one on request. Version 1 files
// (XXH64, zstd-shuffle frames as one zstd frame) are read too.
#include "saes/io/shard_file.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/byte_shuffle.h"
#include "saes/io/checksum.h"

namespace saes::io {
namespace {

using nlohmann::json;

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// Runs fn(worker, task) for task < n_tasks on `threads` threads; the first exception wins and
// stops the other workers from taking new tasks, then is rethrown here.
template <typename Fn>
void parallel_for(std::size_t n_tasks, int threads, Fn fn) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](int worker) {
    try {
      for (std::size_t task = next++; task < n_tasks && !failed; task = next++) fn(worker, task);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  int n_workers = static_cast<int>(
      std::min<std::size_t>(std::max(threads, 1), std::max<std::size_t>(n_tasks, 1)));
  std::vector<std::thread> pool;
  for (int w = 1; w < n_workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// Asks for transparent huge pages on the 2 MiB-aligned interior of a large output buffer: decoding
// into fresh memory otherwise spends about a third of its time in 4 KiB page faults.
void advise_huge_pages(void* data, std::uint64_t bytes) {
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  auto begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// The frame checksum of a file version: XXH64 in version 1, CRC-32C from version 2.
std::uint64_t frame_checksum(std::uint32_t version, const void* data, std::size_t size) {
  return version == 1 ? xxh64(data, size) : crc32c(data, size);
}

// Hex digits of a frame checksum in the directory.
int frame_checksum_digits(std::uint32_t version) { return version == 1 ? 16 : 8; }

// frame_checksum over pieces passed in order.
class FrameHasher {
 public:
  explicit FrameHasher(std::uint32_t version) : version_(version) {}
  void update(const void* data, std::size_t size) {
    if (version_ == 1) {
      xxh_.update(data, size);
    } else {
      crc_ = crc32c(data, size, crc_);
    }
  }
  std::uint64_t digest() const { return version_ == 1 ? xxh_.digest() : crc_; }

 private:
  std::uint32_t version_;
  Xxh64 xxh_;
  std::uint32_t crc_ = 0;
};

// Unshuffles `bytes` bytes of `element`-byte values from their byte planes into `out` in blocks
// that fit in L1 and, when `hash` is set, hashes each block right after writing it (one pass over
// `out` instead of two). Returns the frame checksum of `out` for `version`, or 0 without `hash`.
std::uint64_t unshuffle_and_hash(const std::uint8_t* const* planes, std::uint8_t* out,
                                 std::uint64_t bytes, std::size_t element, std::uint32_t version,
                                 bool hash) {
  constexpr std::size_t kBlockBytes = std::size_t{16} << 10;
  const std::size_t n = bytes / element;
  const std::size_t block = std::max<std::size_t>(1, kBlockBytes / element);
  FrameHasher digest(version);
  for (std::size_t first = 0; first < n; first += block) {
    const std::size_t count = std::min(block, n - first);
    byte_unshuffle_planes(planes, out, element, first, count);
    if (hash) digest.update(out + first * element, count * element);
  }
  return hash ? digest.digest() : 0;
}

std::uint64_t align_up(std::uint64_t value) {
  return (value + kShardAlignment - 1) / kShardAlignment * kShardAlignment;
}

std::uint64_t section_raw_bytes(DType dtype, const std::vector<std::int64_t>& shape) {
  std::uint64_t n = dtype_size(dtype);
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

std::uint64_t section_frame_bytes(DType dtype, std::size_t requested) {
  std::uint64_t element = dtype_size(dtype);
  return std::max<std::uint64_t>(element, requested / element * element);
}

struct FrameJob {
  std::size_t section;
  std::uint64_t raw_offset;
  std::uint64_t raw_bytes;
};

std::vector<FrameJob> frame_jobs(const std::vector<std::uint64_t>& raw_bytes,
                                 const std::vector<std::uint64_t>& frame_bytes) {
  std::vector<FrameJob> jobs;
  for (std::size_t s = 0; s < raw_bytes.size(); ++s) {
    for (std::uint64_t off = 0; off < raw_bytes[s]; off += frame_bytes[s]) {
      jobs.push_back({s, off, std::min(frame_bytes[s], raw_bytes[s] - off)});
    }
  }
  return jobs;
}

// Appends the zstd frame of `n` bytes at `src` to `out`; returns its size.
std::size_t append_zstd(std::string& out, const std::uint8_t* src, std::uint64_t n, int level,
                        ZSTD_CCtx* cctx) {
  const std::size_t at = out.size();
  out.resize(at + ZSTD_compressBound(n));
  std::size_t size = ZSTD_compressCCtx(cctx, out.data() + at, out.size() - at, src, n, level);
  SAES_CHECK(!ZSTD_isError(size), IoError, "zstd compression failed: {}", ZSTD_getErrorName(size));
  out.resize(at + size);
  return size;
}

struct EncodedFrame {
  std::string bytes;
  std::vector<std::uint64_t> plane_bytes;  // zstd-shuffle only
};

// One frame in the current file version. zstd-shuffle stores each byte plane as its own zstd
// frame, or raw when zstd does not shrink it (the low bytes of floats): the reader then
// unshuffles that plane straight from the file instead of copying it out of zstd first.
EncodedFrame encode_frame(const std::uint8_t* raw, std::uint64_t n, std::size_t element,
                          ShardCodec codec, int level, ZSTD_CCtx* cctx,
                          std::vector<std::uint8_t>& scratch) {
  EncodedFrame frame;
  if (codec == ShardCodec::kRaw) {
    frame.bytes.assign(reinterpret_cast<const char*>(raw), n);
  } else if (codec == ShardCodec::kZstd) {
    append_zstd(frame.bytes, raw, n, level, cctx);
  } else {
    const std::uint64_t count = n / element;
    scratch.resize(n);
    byte_shuffle(raw, scratch.data(), count, element);
    for (std::size_t j = 0; j < element; ++j) {
      const std::uint8_t* plane = scratch.data() + j * count;
      const std::size_t at = frame.bytes.size();
      if (append_zstd(frame.bytes, plane, count, level, cctx) >= count) {
        frame.bytes.resize(at);
        frame.bytes.append(reinterpret_cast<const char*>(plane), count);
      }
      frame.plane_bytes.push_back(frame.bytes.size() - at);
    }
  }
  return frame;
}

json section_to_json(const SectionData& data, ShardCodec codec, std::uint64_t offset,
                     std::uint64_t raw_bytes, std::uint64_t frame_bytes,
                     const std::vector<FrameInfo>& frames) {
  const int digits = frame_checksum_digits(kShardFileVersion);
  json frame_list = json::array();
  std::uint64_t stored = 0;
  for (const auto& f : frames) {
    json entry = {f.stored_bytes, checksum_hex(f.stored_checksum, digits),
                  checksum_hex(f.raw_checksum, digits)};
    if (!f.plane_bytes.empty()) entry.push_back(f.plane_bytes);
    frame_list.push_back(std::move(entry));
    stored += f.stored_bytes;
  }
  return json{{"name", data.name},
              {"dtype", dtype_name(data.dtype)},
              {"shape", data.shape},
              {"codec", shard_codec_name(codec)},
              {"offset", offset},
              {"stored_bytes", stored},
              {"raw_bytes", raw_bytes},
              {"frame_bytes", frame_bytes},
              {"frames", std::move(frame_list)}};
}

std::string make_header(std::uint64_t directory_bytes, std::uint64_t directory_checksum) {
  std::string header(kShardHeaderBytes, '\0');
  std::memcpy(header.data(), kShardMagic.data(), 8);
  std::uint32_t version = kShardFileVersion;
  std::uint32_t header_bytes = kShardHeaderBytes;
  std::memcpy(header.data() + 8, &version, 4);
  std::memcpy(header.data() + 12, &header_bytes, 4);
  std::memcpy(header.data() + 16, &directory_bytes, 8);
  std::memcpy(header.data() + 24, &directory_checksum, 8);
  return header;
}

std::uint64_t hex_field(const json& value, int digits, const std::string& what) {
  auto parsed =
      value.is_string() ? try_parse_checksum_hex(value.get<std::string>(), digits) : std::nullopt;
  if (!parsed) throw std::invalid_argument(fmt::format("{}: expected {} hex digits", what, digits));
  return *parsed;
}

// Whether frames of `codec` in file `version` list their byte planes' sizes.
bool has_planes(std::uint32_t version, ShardCodec codec) {
  return version >= 2 && codec == ShardCodec::kZstdShuffle;
}

SectionInfo parse_section(const json& s, std::uint32_t version) {
  SectionInfo info;
  info.name = s.at("name").get<std::string>();
  auto dtype = try_parse_dtype(s.at("dtype").get<std::string>());
  if (!dtype) throw std::invalid_argument("section " + info.name + ": unknown dtype");
  info.dtype = *dtype;
  info.shape = s.at("shape").get<std::vector<std::int64_t>>();
  auto codec = try_parse_shard_codec(s.at("codec").get<std::string>());
  if (!codec) throw std::invalid_argument("section " + info.name + ": unknown codec");
  info.codec = *codec;
  info.offset = s.at("offset").get<std::uint64_t>();
  info.stored_bytes = s.at("stored_bytes").get<std::uint64_t>();
  info.raw_bytes = s.at("raw_bytes").get<std::uint64_t>();
  info.frame_bytes = s.at("frame_bytes").get<std::uint64_t>();
  std::uint64_t stored_offset = 0;
  const int digits = frame_checksum_digits(version);
  const bool planes = has_planes(version, info.codec);
  for (const auto& f : s.at("frames")) {
    if (f.size() != (planes ? 4u : 3u)) {
      throw std::invalid_argument(
          fmt::format("section {}: a frame entry has {} fields, expected {}", info.name, f.size(),
                      planes ? 4 : 3));
    }
    FrameInfo frame{f.at(0).get<std::uint64_t>(),
                    hex_field(f.at(1), digits, info.name),
                    hex_field(f.at(2), digits, info.name),
                    {},
                    stored_offset};
    if (planes) frame.plane_bytes = f.at(3).get<std::vector<std::uint64_t>>();
    info.frames.push_back(std::move(frame));
    stored_offset += info.frames.back().stored_bytes;
  }
  return info;
}

void check_section(const SectionInfo& s, std::uint64_t data_bytes, const std::string& file) {
  for (auto d : s.shape) {
    SAES_CHECK(d >= 0, DataError, "shard {}: section \"{}\": negative dimension", file, s.name);
  }
  SAES_CHECK(s.raw_bytes == section_raw_bytes(s.dtype, s.shape), DataError,
             "shard {}: section \"{}\": raw_bytes {} does not match its shape and dtype", file,
             s.name, s.raw_bytes);
  std::uint64_t element = dtype_size(s.dtype);
  SAES_CHECK(s.frame_bytes > 0 && s.frame_bytes % element == 0, DataError,
             "shard {}: section \"{}\": frame_bytes {} is not a positive multiple of {}", file,
             s.name, s.frame_bytes, element);
  std::uint64_t expected_frames = (s.raw_bytes + s.frame_bytes - 1) / s.frame_bytes;
  std::uint64_t stored = 0;
  for (const auto& f : s.frames) stored += f.stored_bytes;
  SAES_CHECK(s.frames.size() == expected_frames && stored == s.stored_bytes, DataError,
             "shard {}: section \"{}\": frame list does not add up ({} frames, {} stored bytes)",
             file, s.name, s.frames.size(), stored);
  for (std::size_t i = 0; i < s.frames.size(); ++i) {
    const FrameInfo& f = s.frames[i];
    if (f.plane_bytes.empty()) continue;
    const std::uint64_t elements =
        std::min(s.frame_bytes, s.raw_bytes - i * s.frame_bytes) / element;
    std::uint64_t sum = 0;
    bool fits = f.plane_bytes.size() == element;
    for (auto b : f.plane_bytes) {
      sum += b;
      fits = fits && b <= elements;
    }
    SAES_CHECK(fits && sum == f.stored_bytes, DataError,
               "shard {}: section \"{}\": frame {}: byte plane sizes do not add up", file, s.name,
               i);
  }
  SAES_CHECK(s.offset <= data_bytes && s.stored_bytes <= data_bytes - s.offset, DataError,
             "shard {}: section \"{}\": bytes [{}, {}) lie past the end of the file (truncated?)",
             file, s.name, s.offset, s.offset + s.stored_bytes);
}

}  // namespace

std::string_view shard_codec_name(ShardCodec codec) {
  switch (codec) {
    case ShardCodec::kRaw:
      return "raw";
    case ShardCodec::kZstd:
      return "zstd";
    case ShardCodec::kZstdShuffle:
      return "zstd-shuffle";
  }
  return "raw";
}

std::optional<ShardCodec> try_parse_shard_codec(std::string_view text) {
  for (auto codec : {ShardCodec::kRaw, ShardCodec::kZstd, ShardCodec::kZstdShuffle}) {
    if (shard_codec_name(codec) == text) return codec;
  }
  return std::nullopt;
}

ShardFileSummary write_shard_file(const std::filesystem::path& path, std::int64_t n_rows,
                                  const std::vector<SectionData>& sections,
                                  const ShardEncodeOptions& options) {
  std::vector<std::uint64_t> raw_bytes, frame_bytes;
  for (const auto& s : sections) {
    raw_bytes.push_back(section_raw_bytes(s.dtype, s.shape));
    frame_bytes.push_back(section_frame_bytes(s.dtype, options.frame_bytes));
  }
  auto jobs = frame_jobs(raw_bytes, frame_bytes);
  std::vector<std::string> stored(jobs.size());
  std::vector<FrameInfo> infos(jobs.size());
  int threads = std::max(options.threads, 1);
  std::vector<std::unique_ptr<ZSTD_CCtx, CCtxDeleter>> cctx(threads);
  std::vector<std::vector<std::uint8_t>> scratch(threads);
  parallel_for(jobs.size(), threads, [&](int w, std::size_t j) {
    if (!cctx[w]) cctx[w].reset(ZSTD_createCCtx());
    const auto& job = jobs[j];
    const auto& s = sections[job.section];
    const auto* raw = static_cast<const std::uint8_t*>(s.data) + job.raw_offset;
    EncodedFrame frame = encode_frame(raw, job.raw_bytes, dtype_size(s.dtype), options.codec,
                                      options.zstd_level, cctx[w].get(), scratch[w]);
    stored[j] = std::move(frame.bytes);
    infos[j] = {
        stored[j].size(), frame_checksum(kShardFileVersion, stored[j].data(), stored[j].size()),
        frame_checksum(kShardFileVersion, raw, job.raw_bytes), std::move(frame.plane_bytes)};
  });

  json section_list = json::array();
  std::uint64_t offset = 0;
  std::vector<std::uint64_t> offsets;
  for (std::size_t s = 0, j = 0; s < sections.size(); ++s) {
    std::vector<FrameInfo> frames;
    for (; j < jobs.size() && jobs[j].section == s; ++j) frames.push_back(infos[j]);
    offset = align_up(offset);
    offsets.push_back(offset);
    section_list.push_back(
        section_to_json(sections[s], options.codec, offset, raw_bytes[s], frame_bytes[s], frames));
    offset += section_list.back()["stored_bytes"].get<std::uint64_t>();
  }
  std::string directory = json{{"n_rows", n_rows}, {"sections", std::move(section_list)}}.dump();
  std::string header = make_header(directory.size(), xxh64(directory.data(), directory.size()));
  std::string head = header + directory;
  head.resize(align_up(head.size()), '\0');

  AtomicFile file(path);
  file.write(head);
  const std::string zeros(kShardAlignment, '\0');
  std::uint64_t position = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    bool first = j == 0 || jobs[j - 1].section != jobs[j].section;
    if (first) {
      file.write(zeros.data(), offsets[jobs[j].section] - position);
      position = offsets[jobs[j].section];
    }
    file.write(stored[j]);
    position += stored[j].size();
  }
  file.commit();
  return {head.size() + position, xxh64(head.data(), kShardHeaderBytes + directory.size())};
}

ShardFile ShardFile::load(const std::filesystem::path& path) {
  ShardFile f;
  f.name_ = path.filename().string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SAES_CHECK(fd >= 0, IoError, "shard {}: cannot open {}: {}", f.name_, path.string(),
             std::strerror(errno));
  struct stat st {};
  void* map = MAP_FAILED;
  if (::fstat(fd, &st) == 0) {
    f.size_ = static_cast<std::uint64_t>(st.st_size);
    map = f.size_ == 0 ? nullptr
                       : ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  }
  int err = errno;
  ::close(fd);
  SAES_CHECK(map != MAP_FAILED, IoError, "shard {}: cannot map {}: {}", f.name_, path.string(),
             std::strerror(err));
  std::uint64_t size = f.size_;
  f.owner_ = std::shared_ptr<const void>(map, [size](const void* p) {
    if (p != nullptr) ::munmap(const_cast<void*>(p), size);
  });
  f.data_ = static_cast<const char*>(map);
  f.parse_layout();
  return f;
}

ShardFile ShardFile::parse(std::string_view bytes, std::string name) {
  ShardFile f;
  f.name_ = std::move(name);
  auto copy = std::make_shared<std::string>(bytes);
  f.data_ = copy->data();
  f.size_ = copy->size();
  f.owner_ = std::move(copy);
  f.parse_layout();
  return f;
}

void ShardFile::parse_layout() {
  const char* b = data_;
  SAES_CHECK(size_ >= kShardHeaderBytes, DataError,
             "shard {}: truncated: {} bytes, shorter than the header", name_, size_);
  SAES_CHECK(std::string_view(b, 8) == kShardMagic, DataError,
             "shard {}: bad magic (not a saes shard file)", name_);
  std::uint32_t version = 0;
  std::uint64_t dir_bytes = 0, dir_checksum = 0;
  std::memcpy(&version, b + 8, 4);
  std::memcpy(&dir_bytes, b + 16, 8);
  std::memcpy(&dir_checksum, b + 24, 8);
  SAES_CHECK(version >= 1 && version <= kShardFileVersion, UnsupportedError,
             "shard {}: file version {}, this saes reads versions 1 to {}", name_, version,
             kShardFileVersion);
  version_ = version;
  SAES_CHECK(dir_bytes <= size_ - kShardHeaderBytes, DataError,
             "shard {}: truncated: directory of {} bytes does not fit in {} bytes", name_,
             dir_bytes, size_);
  const char* dir = b + kShardHeaderBytes;
  SAES_CHECK(xxh64(dir, dir_bytes) == dir_checksum, DataError,
             "shard {}: directory checksum mismatch", name_);
  checksum_ = xxh64(b, kShardHeaderBytes + dir_bytes);
  data_offset_ = align_up(kShardHeaderBytes + dir_bytes);
  try {
    json root = json::parse(dir, dir + dir_bytes);
    n_rows_ = root.at("n_rows").get<std::int64_t>();
    for (const auto& s : root.at("sections")) sections_.push_back(parse_section(s, version_));
  } catch (const std::exception& e) {
    SAES_THROW(DataError, "shard {}: malformed directory: {}", name_, e.what());
  }
  std::uint64_t end = data_offset_;
  for (const auto& s : sections_) end = std::max(end, data_offset_ + s.offset + s.stored_bytes);
  SAES_CHECK(size_ == end, DataError, "shard {}: truncated or padded: {} bytes, directory says {}",
             name_, size_, end);
  for (const auto& s : sections_) check_section(s, end - data_offset_, name_);
}

const SectionInfo* ShardFile::find(std::string_view section) const {
  for (const auto& s : sections_) {
    if (s.name == section) return &s;
  }
  return nullptr;
}

struct FrameDecoder::State {
  std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx;
  std::vector<std::uint8_t> scratch;
  std::vector<const std::uint8_t*> planes;
};

FrameDecoder::FrameDecoder() : state_(std::make_unique<State>()) {}
FrameDecoder::~FrameDecoder() = default;

std::vector<ShardFile::FrameTask> ShardFile::prepare_decode(
    const std::vector<DecodeTarget>& targets) const {
  std::vector<FrameTask> tasks;
  for (std::size_t t = 0; t < targets.size(); ++t) {
    advise_huge_pages(targets[t].out, targets[t].section->raw_bytes);
    for (std::size_t f = 0; f < targets[t].section->frames.size(); ++f) tasks.push_back({t, f});
  }
  return tasks;
}

void ShardFile::decode_frame(const DecodeTarget& target, std::size_t index, FrameDecoder& decoder,
                             bool verify_decoded) const {
  const SectionInfo& s = *target.section;
  const FrameInfo& frame = s.frames.at(index);
  const std::uint64_t raw_offset = index * s.frame_bytes;
  const std::uint64_t raw_bytes = std::min(s.frame_bytes, s.raw_bytes - raw_offset);
  const char* src = data_ + data_offset_ + s.offset + frame.stored_offset;
  auto* out = static_cast<std::uint8_t*>(target.out) + raw_offset;
  SAES_CHECK(frame_checksum(version_, src, frame.stored_bytes) == frame.stored_checksum, DataError,
             "shard {}: section \"{}\": frame {} stored checksum mismatch (corrupt file)", name_,
             s.name, index);
  if (s.codec == ShardCodec::kRaw) {
    SAES_CHECK(frame.stored_bytes == raw_bytes, DataError,
               "shard {}: section \"{}\": raw frame {} has {} bytes, expected {}", name_, s.name,
               index, frame.stored_bytes, raw_bytes);
    std::memcpy(out, src, raw_bytes);  // the stored checksum already covered these bytes
    return;
  }
  FrameDecoder::State& state = *decoder.state_;
  if (!state.dctx) state.dctx.reset(ZSTD_createDCtx());
  // Decompresses `stored` bytes at `from` into `to`, which must come to exactly `bytes`.
  auto decompress = [&](std::uint8_t* to, std::uint64_t bytes, const char* from,
                        std::uint64_t stored) {
    std::size_t n = ZSTD_decompressDCtx(state.dctx.get(), to, bytes, from, stored);
    SAES_CHECK(!ZSTD_isError(n) && n == bytes, DataError,
               "shard {}: section \"{}\": frame {} does not decompress to {} bytes: {}", name_,
               s.name, index, bytes, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
  };
  const std::size_t element = dtype_size(s.dtype);
  std::uint64_t decoded_checksum = 0;
  if (s.codec == ShardCodec::kZstd) {
    decompress(out, raw_bytes, src, frame.stored_bytes);
    if (verify_decoded) decoded_checksum = frame_checksum(version_, out, raw_bytes);
  } else {
    // zstd-shuffle: byte planes from the scratch buffer or, stored raw, from the file itself.
    const std::uint64_t count = raw_bytes / element;
    if (state.scratch.size() < raw_bytes) state.scratch.resize(raw_bytes);
    std::vector<const std::uint8_t*>& planes = state.planes;
    planes.resize(element);
    if (frame.plane_bytes.empty()) {  // version 1: one zstd frame of the shuffled bytes
      decompress(state.scratch.data(), raw_bytes, src, frame.stored_bytes);
      for (std::size_t j = 0; j < element; ++j) planes[j] = state.scratch.data() + j * count;
    } else {
      const char* plane = src;
      for (std::size_t j = 0; j < element; ++j) {
        const std::uint64_t stored = frame.plane_bytes[j];
        if (stored == count) {
          planes[j] = reinterpret_cast<const std::uint8_t*>(plane);
        } else {
          decompress(state.scratch.data() + j * count, count, plane, stored);
          planes[j] = state.scratch.data() + j * count;
        }
        plane += stored;
      }
    }
    decoded_checksum =
        unshuffle_and_hash(planes.data(), out, raw_bytes, element, version_, verify_decoded);
  }
  SAES_CHECK(!verify_decoded || decoded_checksum == frame.raw_checksum, DataError,
             "shard {}: section \"{}\": frame {} raw checksum mismatch after decoding", name_,
             s.name, index);
}

void ShardFile::decode(const std::vector<DecodeTarget>& targets, int threads,
                       bool verify_decoded) const {
  const auto tasks = prepare_decode(targets);
  threads = std::max(threads, 1);
  std::vector<FrameDecoder> decoders(static_cast<std::size_t>(threads));
  parallel_for(tasks.size(), threads, [&](int w, std::size_t j) {
    decode_frame(targets[tasks[j].target], tasks[j].frame, decoders[static_cast<std::size_t>(w)],
                 verify_decoded);
  });
}

}  // namespace saes::io
