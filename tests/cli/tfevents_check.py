#!/usr/bin/env python3
"""Reads a TensorBoard event file written by saes-train (logging.tensorboard) with a parser written
here from the format description — TFRecord framing (uint64 LE length, masked CRC-32C of it, the
data, masked CRC-32C of the data) and the protobuf wire format of Event (wall_time 1, step 2,
file_version 3, summary 5, session_log 7), Summary (value 1) and Value (tag 1, simple_value 2) —
without the tensorboard or protobuf packages, and compares it with the run's metrics.jsonl.

Usage: tfevents_check.py EVENTS METRICS_JSONL [--resumed-after STEP]
  Every line of METRICS_JSONL (those with step > STEP when resumed) must be one Event, in order,
  whose step is the line's step and whose values are the line's, as float32, with the same tags in
  the same order. Prints "ok: N events" or the first difference (exit 1)."""
import json
import math
import os
import struct
import sys
import time


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(blob: bytes):
    at = 0
    while at < len(blob):
        assert len(blob) - at >= 12, "truncated record header at byte %d" % at
        header = blob[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[at + 8:at + 12])
        assert length_crc == masked(crc32c(header)), "length CRC mismatch at byte %d" % at
        data = blob[at + 12:at + 12 + length]
        assert len(data) == length and len(blob) >= at + 16 + length, "truncated record at %d" % at
        (data_crc,) = struct.unpack("<I", blob[at + 12 + length:at + 16 + length])
        assert data_crc == masked(crc32c(data)), "data CRC mismatch at byte %d" % at
        yield data
        at += 16 + length


def varint(buf: bytes, at: int):
    value, shift = 0, 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def fields(buf: bytes):
    at = 0
    while at < len(buf):
        key, at = varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(buf, at)
        elif wire == 1:
            value, at = buf[at:at + 8], at + 8
        elif wire == 5:
            value, at = buf[at:at + 4], at + 4
        elif wire == 2:
            n, at = varint(buf, at)
            value, at = buf[at:at + n], at + n
        else:
            raise AssertionError("unexpected wire type %d" % wire)
        yield number, wire, value


def event(data: bytes) -> dict:
    out = {"wall_time": 0.0, "step": 0}
    for number, wire, value in fields(data):
        if (number, wire) == (1, 1):
            out["wall_time"] = struct.unpack("<d", value)[0]
        elif (number, wire) == (2, 0):
            out["step"] = value
        elif (number, wire) == (3, 2):
            out["file_version"] = value.decode()
        elif (number, wire) == (5, 2):
            scalars = []
            for vn, vw, v in fields(value):
                assert (vn, vw) == (1, 2), "Summary field %d" % vn
                tag, simple = None, None
                for n, w, x in fields(v):
                    if (n, w) == (1, 2):
                        tag = x.decode()
                    elif (n, w) == (2, 5):
                        simple = struct.unpack("<f", x)[0]
                assert simple is not None, "Value %s has no simple_value" % tag
                scalars.append((tag, simple))
            out["scalars"] = scalars
        elif (number, wire) == (7, 2):
            status = 0
            for n, w, x in fields(value):
                if (n, w) == (1, 0):
                    status = x
            out["session_status"] = status
        else:
            raise AssertionError("unexpected Event field %d (wire type %d)" % (number, wire))
    return out


def as_float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main() -> int:
    path, metrics_path = sys.argv[1], sys.argv[2]
    resumed_after = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--resumed-after" else None
    name = os.path.basename(path)
    assert name.startswith("events.out.tfevents."), name
    assert name.split(".")[3].isdigit(), "no unix time in %s" % name
    events = [event(r) for r in records(open(path, "rb").read())]
    assert events and events[0].get("file_version") == "brain.Event:2", events[:1]
    rest = events[1:]
    if resumed_after is not None:
        assert rest and rest[0].get("session_status") == 1, "no SessionLog START: %s" % rest[:1]
        assert rest[0]["step"] == resumed_after + 1, rest[0]
        rest = rest[1:]
    lines = [json.loads(l) for l in open(metrics_path) if l.strip()]
    if resumed_after is not None:
        lines = [l for l in lines if l["step"] > resumed_after]
    assert len(rest) == len(lines), "%d scalar events, %d metrics lines" % (len(rest), len(lines))
    now = time.time()
    previous = events[0]["wall_time"]
    assert abs(now - previous) < 3600, "wall_time %s is not now" % previous
    for e, line in zip(rest, lines):
        assert e["step"] == line["step"], (e["step"], line["step"])
        assert previous <= e["wall_time"] <= now + 1, (previous, e["wall_time"])
        previous = e["wall_time"]
        want = [(k, v) for k, v in line.items() if k != "step"]
        assert [t for t, _ in e["scalars"]] == [k for k, _ in want], "tags differ at step %d" % e["step"]
        for (tag, got), (_, value) in zip(e["scalars"], want):
            if value is None:
                assert math.isnan(got), (e["step"], tag, got)
            else:
                assert got == as_float32(value), (e["step"], tag, got, value)
    print("ok: %d events" % len(events))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print("tfevents_check: %s" % e)
        sys.exit(1)
