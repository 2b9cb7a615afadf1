// llama2.c tokenizer files (tok512.bin layout: max length, then score/length/bytes per token): load_tokenizer accepts the file and then encodes/decodes cleanly, or refuses it with a
// saes::Error.
#include "tokenizer_exercise.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  saes::fuzz::load_and_exercise(saes::fuzz::write_input(data, size, "tok.bin"));
  return 0;
}
