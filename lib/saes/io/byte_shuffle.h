// Byte-shuffle filter for compressing arrays of numbers: byte j of every element is gathered into
// plane j (a [n, s] → [s, n] byte transpose), so the slowly varying sign/exponent bytes sit
// together.
#pragma once

#include <cstddef>

namespace saes::io {

/// out[j * n + i] = in[i * s + j] for i < n_elements, j < element_size. `in` and `out` hold
/// n_elements * element_size bytes and must not overlap. Any element_size ≥ 1 works; 2, 4 and 8
/// take vectorised paths.
void byte_shuffle(const void* in, void* out, std::size_t n_elements, std::size_t element_size);

/// Inverse of byte_shuffle: out[i * s + j] = in[j * n + i].
void byte_unshuffle(const void* in, void* out, std::size_t n_elements, std::size_t element_size);

/// byte_unshuffle from planes stored apart: out[i * s + j] = planes[j][i], for the elements
/// first <= i < first + count only (`planes` and `out` point at the whole arrays). Lets a caller
/// take some planes straight from a file mapping and others from a decoder's buffer, and
/// unshuffle a cache-sized block and use it at once.
void byte_unshuffle_planes(const unsigned char* const* planes, void* out, std::size_t element_size,
                           std::size_t first, std::size_t count);

}  // namespace saes::io
