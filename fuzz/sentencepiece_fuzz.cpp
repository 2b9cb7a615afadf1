// SentencePiece .model files (a ModelProto protobuf read by our own parser): load_tokenizer accepts the file and then encodes/decodes cleanly, or refuses it with a
// saes::Error.
#include "tokenizer_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  saes::fuzz::load_and_exercise(saes::fuzz::write_input(data, size, "tokenizer.model"));
  return 0;
}
