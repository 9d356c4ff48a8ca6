// Encodes a file with tiktoken's gpt2 encoding (npm tiktoken) and prints the
// same line as bench_bpe. Run from a folder where tiktoken is installed.
import { readFileSync } from "node:fs";
import { get_encoding } from "tiktoken";

const text = readFileSync(process.argv[2], "utf8");
const enc = get_encoding("gpt2");
const t0 = process.hrtime.bigint();
const ids = enc.encode(text, "all");
const t = Number(process.hrtime.bigint() - t0) / 1e9;
let sum = 0n;
for (const id of ids) sum = (sum * 31n + BigInt(id)) & 0xffffffffffffffffn;
console.log(`tiktoken  ${ids.length} tokens  ${t.toFixed(2)} s  ${(Buffer.byteLength(text) / t / 1e6).toFixed(2)} MB/s  checksum ${sum}`);
enc.free();
