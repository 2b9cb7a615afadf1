// Byte shuffle / unshuffle. The element size is a template parameter for 2, 4 and 8 bytes so GCC
// turns the inner loops into SIMD interleave/deinterleave; work goes in blocks of kBlockElements so
// the s output streams and the input block stay in L1/L2 even for large arrays.
#include "saes/io/byte_shuffle.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace saes::io {
namespace {

constexpr std::size_t kBlockElements = 2048;

template <std::size_t S>
void shuffle_fixed(const std::uint8_t* __restrict in, std::uint8_t* __restrict out, std::size_t n) {
  for (std::size_t start = 0; start < n; start += kBlockElements) {
    const std::size_t count = std::min(kBlockElements, n - start);
    const std::uint8_t* src = in + start * S;
    for (std::size_t j = 0; j < S; ++j) {
      std::uint8_t* dst = out + j * n + start;
      for (std::size_t i = 0; i < count; ++i) dst[i] = src[i * S + j];
    }
  }
}

template <std::size_t S>
void unshuffle_fixed(const std::uint8_t* const* planes, std::uint8_t* __restrict out,
                     std::size_t first, std::size_t end) {
  const std::uint8_t* __restrict in[S];
  for (std::size_t j = 0; j < S; ++j) in[j] = planes[j];
  for (std::size_t start = first; start < end; start += kBlockElements) {
    const std::size_t count = std::min(kBlockElements, end - start);
    std::uint8_t* dst = out + start * S;
    for (std::size_t i = 0; i < count; ++i) {
      for (std::size_t j = 0; j < S; ++j) dst[i * S + j] = in[j][start + i];
    }
  }
}

void shuffle_any(const std::uint8_t* in, std::uint8_t* out, std::size_t n, std::size_t s) {
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < s; ++j) out[j * n + i] = in[i * s + j];
  }
}

void unshuffle_any(const std::uint8_t* const* planes, std::uint8_t* out, std::size_t s,
                   std::size_t first, std::size_t end) {
  for (std::size_t i = first; i < end; ++i) {
    for (std::size_t j = 0; j < s; ++j) out[i * s + j] = planes[j][i];
  }
}

}  // namespace

void byte_shuffle(const void* in, void* out, std::size_t n_elements, std::size_t element_size) {
  const auto* src = static_cast<const std::uint8_t*>(in);
  auto* dst = static_cast<std::uint8_t*>(out);
  switch (element_size) {
    case 2:
      return shuffle_fixed<2>(src, dst, n_elements);
    case 4:
      return shuffle_fixed<4>(src, dst, n_elements);
    case 8:
      return shuffle_fixed<8>(src, dst, n_elements);
    default:
      return shuffle_any(src, dst, n_elements, element_size);
  }
}

void byte_unshuffle(const void* in, void* out, std::size_t n_elements, std::size_t element_size) {
  const auto* src = static_cast<const std::uint8_t*>(in);
  std::vector<const std::uint8_t*> planes(element_size);
  for (std::size_t j = 0; j < element_size; ++j) planes[j] = src + j * n_elements;
  byte_unshuffle_planes(planes.data(), out, element_size, 0, n_elements);
}

void byte_unshuffle_planes(const unsigned char* const* planes, void* out, std::size_t element_size,
                           std::size_t first, std::size_t count) {
  auto* dst = static_cast<std::uint8_t*>(out);
  const std::size_t end = first + count;
  switch (element_size) {
    case 2:
      return unshuffle_fixed<2>(planes, dst, first, end);
    case 4:
      return unshuffle_fixed<4>(planes, dst, first, end);
    case 8:
      return unshuffle_fixed<8>(planes, dst, first, end);
    default:
      return unshuffle_any(planes, dst, element_size, first, end);
  }
}

}  // namespace saes::io
