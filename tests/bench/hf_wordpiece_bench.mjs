// Encodes the "text" of every JSON line of a file with Hugging Face's
// tokenizers (npm `tokenizers`, Rust) from a tokenizer.json, [CLS] ... [SEP]
// per line, and prints tokens, tokens/s, MB/s and a checksum of the ids (as
// bench_wordpiece does). Lines are parsed first; only encoding is timed.
// Run with RAYON_NUM_THREADS=1 (one thread, as hone's bench).
//   node hf_wordpiece_bench.mjs TOKENIZER.json ROWS.jsonl
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const require = createRequire(process.cwd() + "/");
const { Tokenizer } = require("tokenizers");
const [tokPath, rowsPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokPath);
const texts = readFileSync(rowsPath, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l).text);
const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
const t0 = process.hrtime.bigint();
let tokens = 0;
let sum = 0n;
const M = (1n << 64n) - 1n;
const all = [];
for (let i = 0; i < texts.length; i += 256) {
  const encs = await tok.encodeBatch(texts.slice(i, i + 256), { addSpecialTokens: true });
  for (const e of encs) all.push(e.getIds());
}
const t = Number(process.hrtime.bigint() - t0) / 1e9;
for (const ids of all) {
  tokens += ids.length;
  for (const id of ids) sum = (sum * 31n + BigInt(id)) & M;
}
console.log(`hf        ${tokens} tokens  ${t.toFixed(2)} s  ${(tokens / t).toFixed(0)} tokens/s  ${(bytes / t / 1e6).toFixed(2)} MB/s  checksum ${sum}`);
