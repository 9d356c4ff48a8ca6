// The peer for tests/bench/gguf_gen.sh: llama.cpp (node-llama-cpp's prebuilt
// binaries, CPU) generates N tokens greedily after TEXT from a GGUF file on
// THREADS threads; prints the prompt's and the generation's tokens/s as JSON.
//   node gguf_gen.mjs FILE.gguf TEXT N THREADS
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [file, text, n, threads] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: file });
const ids = model.tokenize(text);
const ctx = await model.createContext({ contextSize: ids.length + Number(n) + 8, threads: Number(threads) });
const seq = ctx.getSequence();
let made = 0, t0 = 0, tp = 0;
const start = performance.now();
for await (const tok of seq.evaluate(ids, { temperature: 0 })) {
	void tok;
	if (made === 0) {
		tp = performance.now() - start; /* the prompt, and the first token */
		t0 = performance.now();
	}
	if (++made >= Number(n)) break;
}
const dt = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ prompt_tokens: ids.length, prompt_ms: tp, tokens: made - 1, tokens_per_s: (made - 1) / dt }));
await ctx.dispose();
await model.dispose();
await llama.dispose();
