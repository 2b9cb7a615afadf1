#!/usr/bin/env python3
"""Writes the small hand-made seed inputs of the fuzz targets into fuzz/corpus/<target>/.

Standard library only. Inputs that already exist in the tree (tests/data's safetensors, shards,
manifests and HF configs, configs/*.yaml) and the test assets' tokenizers are added by
bench/fuzz.sh at run time instead of being copied here.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def byte_alphabet():
    """GPT-2's bytes -> printable code points table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    codes = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, codes)}


def tokenizer_json_seeds():
    alphabet = byte_alphabet()
    vocab = {alphabet[b]: b for b in range(256)}
    for i, piece in enumerate(["Ġt", "he", "Ġthe", "in", "Ġa", "Ġo", "nc", "nce"]):
        vocab[piece] = 256 + i
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "Ġ o", ["n", "c"], "nc e"]
    byte_level = {
        "version": "1.0",
        "added_tokens": [{"id": 264, "content": "<|endoftext|>", "special": True,
                          "normalized": False, "lstrip": False, "rstrip": False,
                          "single_word": False}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "'s|'t| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": dict(vocab, **{"<|endoftext|>": 264}), "merges": merges},
    }
    put("tokenizer_json", "byte_level.json", json.dumps(byte_level, ensure_ascii=False))
    gpt2_style = dict(byte_level)
    gpt2_style["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}
    gpt2_style.pop("normalizer")
    put("tokenizer_json", "byte_level_regex.json", json.dumps(gpt2_style, ensure_ascii=False))

    sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        sp_vocab["<0x%02X>" % b] = 3 + b
    words = ["▁", "o", "n", "c", "e", "▁o", "nc", "▁onc", "▁once"]
    for i, w in enumerate(words):
        sp_vocab[w] = 259 + i
    sentencepiece_style = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": c, "special": True, "normalized": False}
                         for c, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
                  "vocab": sp_vocab, "merges": ["▁ o", "n c", "▁o nc", "▁onc e"]},
    }
    put("tokenizer_json", "sentencepiece_bpe.json", json.dumps(sentencepiece_style, ensure_ascii=False))


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number, wire, payload):
    key = varint((number << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 2:
        return key + varint(len(payload)) + payload
    if wire == 5:
        return key + payload
    raise ValueError(wire)


def sentencepiece_seed():
    """A tiny BPE ModelProto: pieces (1), trainer_spec (2), normalizer_spec (3)."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    pieces += [(w, -float(i), 1) for i, w in enumerate(["▁o", "nc", "▁onc", "▁once", "▁", "o", "n", "c", "e"])]
    body = b""
    for text, score, kind in pieces:
        piece = field(1, 2, text.encode()) + field(2, 5, struct.pack("<f", score)) + field(3, 0, kind)
        body += field(1, 2, piece)
    trainer = field(3, 0, 2) + field(35, 0, 1) + field(40, 0, 0) + field(41, 0, 1) + field(42, 0, 2)
    normalizer = field(1, 2, b"identity") + field(3, 0, 1) + field(4, 0, 0) + field(5, 0, 1)
    body += field(2, 2, trainer) + field(3, 2, normalizer)
    put("sentencepiece", "tiny_bpe.model", body)


def llama2c_seed():
    """llama2.c tokenizer: int32 max_token_length, then per token float score, int32 len, bytes."""
    tokens = [("<unk>", 0.0), ("\n<s>\n", 0.0), ("\n</s>\n", 0.0)]
    tokens += [("<0x%02X>" % b, 0.0) for b in range(256)]
    tokens += [(w, -float(i)) for i, w in enumerate([" o", "nc", " onc", " once", "o", "n", "c", "e", " "])]
    out = struct.pack("<i", max(len(t.encode()) for t, _ in tokens))
    for text, score in tokens:
        raw = text.encode()
        out += struct.pack("<fi", score, len(raw)) + raw
    put("llama2c_tokenizer", "tiny_tok.bin", out)


def viewer_seeds():
    for i, request in enumerate([
            "/", "/?sort=frequency&order=desc&page=2&per_page=3", "/?q=once", "/?q=<fz>",
            "/features/3", "/features/7", "/features/0", "/api/features?sort=max_act&q=3",
            "/api/features/2", "/eval", "/api/eval", "/style.css", "/features/../eval",
            "/features/08", "/?page=999999999999&per_page=0", "/?sort=cosine&order=asc"]):
        put("viewer", "request%02d" % i, request)


def encode_seeds():
    for i, text in enumerate([
            "Once upon a time, there was a little girl named Lily.",
            "  spaces   and\ttabs\n\nnew lines <|endoftext|> <s> </s>",
            "caf\u00e9 na\u00efve \u2581 \U0001F389 \u4e2d\u6587 123 4567",
            "don't I'll we're 'S 'T"]):
        put("encode", "text%d.txt" % i, text)


if __name__ == "__main__":
    tokenizer_json_seeds()
    sentencepiece_seed()
    llama2c_seed()
    viewer_seeds()
    encode_seeds()
