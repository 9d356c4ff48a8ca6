// The peer for tests/integration/gguf.sh: llama.cpp (node-llama-cpp's
// prebuilt binaries, CPU, no download) loads a GGUF file hone wrote,
// tokenizes the text with the file's own tokenizer and prints, as JSON, the
// ids and the next-token probabilities after the whole text; with ADAPTER
// (a GGUF LoRA adapter), llama.cpp applies it to the model first.
//   node gguf_probs.mjs FILE.gguf TEXT [ADAPTER.gguf]
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [file, text, adapter] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: file });
const ids = model.tokenize(text);
const ctx = await model.createContext({
	contextSize: Math.max(64, ids.length + 8),
	threads: 2,
	...(adapter ? { lora: { adapters: [{ filePath: adapter }] } } : {}),
});
const seq = ctx.getSequence();
let probs = null;
for await (const out of seq.evaluateWithMetadata(ids, { probabilities: true }, { temperature: 0 })) {
	probs = out.probabilities;
	break;
}
const p = new Array(model.tokens.count ?? 0).fill(0);
for (const [t, v] of probs) p[t] = v;
console.log(JSON.stringify({ ids: Array.from(ids), vocab: p.length, probs: p }));
await ctx.dispose();
await model.dispose();
await llama.dispose();
