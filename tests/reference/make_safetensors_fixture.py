"""Writes tests/data/reference_all_dtypes.safetensors, a small safetensors file made independently of
saes from the published layout (8-byte LE header length, compact JSON header padded with spaces to a
multiple of 8, data region). It mimics the Python `safetensors` writer: tensors ordered by dtype
alignment descending (the library's Dtype enum order), then by name; "__metadata__" first.

How it was run (2025, dev machine):
    /usr/bin/python3 tests/reference/make_safetensors_fixture.py tests/data/reference_all_dtypes.safetensors
with Python 3.11.2 and numpy 1.24.2 (Debian bookworm). No randomness: values are fixed below and
mirrored in lib/saes/io/safetensors_test.cpp. The `safetensors` package itself was unavailable
(`apt-cache policy python3-safetensors` lists no candidate, and PyPI is unreachable), hence this
writer; it uses only the standard library and numpy.
"""
import json
import struct
import sys

import numpy as np

# The `safetensors` Dtype enum order (increasing alignment) for the dtypes saes supports.
DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64"]


def bf16_bits(values):
    """bfloat16 bit patterns of float32 values that bf16 represents exactly."""
    bits = np.array(values, dtype="<f4").view("<u4")
    assert np.all(bits & 0xFFFF == 0), "value not exactly representable in bfloat16"
    return (bits >> 16).astype("<u2")


def fixture_tensors():
    """name -> (dtype code, shape, little-endian bytes)."""
    t = {}
    t["weight"] = ("F32", [3, 4], (np.arange(12, dtype="<f4") * 0.25 - 1.0).tobytes())
    t["scalar"] = ("F32", [], np.array(42.5, dtype="<f4").tobytes())
    t["empty"] = ("F32", [0, 4], b"")
    t["half"] = ("F16", [4], np.array([0.5, -1.5, 65504.0, 2.0**-24], dtype="<f2").tobytes())
    t["brain"] = ("BF16", [2, 3], bf16_bits([1.0, -2.0, 0.5, 3.140625, -0.0, 2.0**100]).tobytes())
    t["double"] = ("F64", [2, 2], np.array([1.0 / 3.0, -2.5, 1e300, -0.0], dtype="<f8").tobytes())
    t["long"] = ("I64", [3], np.array([-(2**62), 0, 2**40 + 7], dtype="<i8").tobytes())
    t["int"] = ("I32", [2, 2], np.array([-7, 0, 123456, 2**31 - 1], dtype="<i4").tobytes())
    t["short"] = ("I16", [3], np.array([-32768, 1, 32767], dtype="<i2").tobytes())
    t["byte"] = ("I8", [4], np.array([-128, -1, 0, 127], dtype="i1").tobytes())
    t["ubyte"] = ("U8", [5], np.array([0, 1, 128, 254, 255], dtype="u1").tobytes())
    t["mask"] = ("BOOL", [3], np.array([True, False, True], dtype="?").tobytes())
    return t


def serialize(tensors, metadata):
    order = sorted(tensors, key=lambda name: (-DTYPE_ORDER.index(tensors[name][0]), name.encode()))
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name in order:
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(tensors[name][2] for name in order)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/reference_all_dtypes.safetensors"
    metadata = {"note": 'saes fixture "v1" \u2013 \u03c0'}
    with open(out, "wb") as f:
        f.write(serialize(fixture_tensors(), metadata))


if __name__ == "__main__":
    main()
