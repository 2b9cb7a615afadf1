// TensorBoard event files for the training metrics (`logging.tensorboard: true`): the values of
// every metrics.jsonl line as one Event of scalar summaries, in TFRecord framing (masked CRC-32C),
// so that `tensorboard --logdir` and `wandb sync --sync-tensorboard` read a run. The messages are
// compiled from tfevents.proto with Debian's libprotobuf; metrics.h computes the values.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace saes::training {

/// The file version TensorBoard expects in the first Event of a file.
inline constexpr std::string_view kTensorBoardFileVersion = "brain.Event:2";
/// Event files are named `<prefix><unix seconds>.<hostname>` (TensorBoard finds "tfevents").
inline constexpr std::string_view kTensorBoardFilePrefix = "events.out.tfevents.";

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`; crc32c("123456789") is
/// 0xE3069283.
std::uint32_t crc32c(std::string_view data);
/// The TFRecord checksum: ((crc >> 15) | (crc << 17)) + 0xa282ead8 of crc32c(data).
std::uint32_t masked_crc32c(std::string_view data);
/// One TFRecord: uint64 LE length, uint32 LE masked CRC of those 8 bytes, the data, uint32 LE
/// masked CRC of the data.
std::string tfrecord_frame(std::string_view data);

/// Whether this build writes event files (configured with protobuf; else the writer throws
/// UnsupportedError).
bool tensorboard_available();

/// Seconds since the Unix epoch, as an Event's wall_time.
double unix_time_s();

/// Appends Events to a new event file of a run folder; every record is flushed as it is written,
/// so a killed run keeps what it logged. Move-only.
class TensorBoardWriter {
 public:
  /// Creates `dir/events.out.tfevents.<unix seconds>.<hostname>` exclusively (a file of that name
  /// already there is never touched: the name gets a `.1`, `.2`, … suffix instead) and writes the
  /// file-version Event at `wall_time_s`. With `resume_step` (a run resumed from the checkpoint
  /// at that step) a SessionLog START Event at step resume_step + 1 follows, the format's restart
  /// marker: a reader that honours it drops the steps after the checkpoint that an earlier file
  /// of the run logged.
  /// Throws IoError when the file cannot be created, UnsupportedError without protobuf.
  TensorBoardWriter(const std::filesystem::path& dir, std::optional<std::int64_t> resume_step,
                    double wall_time_s);
  ~TensorBoardWriter();
  TensorBoardWriter(TensorBoardWriter&&) noexcept;
  TensorBoardWriter& operator=(TensorBoardWriter&&) noexcept;

  /// One Event at `step` whose Summary holds one simple_value (float) per metric, tagged with
  /// its name, in order. Throws IoError when the write fails.
  void write_scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& values,
                     double wall_time_s);
  const std::filesystem::path& path() const { return path_; }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  void write_record(const std::string& event);

  std::filesystem::path path_;
  std::unique_ptr<std::FILE, Closer> file_;
};

}  // namespace saes::training
