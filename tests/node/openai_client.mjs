// The npm openai client against hone serve: non-streaming and streaming
// completions and chat. Usage: node openai_client.mjs BASE_URL API_KEY PROMPT
// Prints one JSON object: each call's text, finish reason and usage.
import OpenAI from "openai";

const [base, key, prompt] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0, timeout: 30000 });
const out = {};

const c = await client.completions.create({ model: "m", prompt, max_tokens: 12, temperature: 0 });
out.completion = { text: c.choices[0].text, finish: c.choices[0].finish_reason, usage: c.usage, object: c.object };

let text = "", chunks = 0, finish = null;
const s = await client.completions.create({ model: "m", prompt, max_tokens: 12, temperature: 0, stream: true });
for await (const ch of s) {
  chunks++;
  text += ch.choices[0].text;
  finish = ch.choices[0].finish_reason ?? finish;
}
out.completion_stream = { text, chunks, finish };

const msgs = [{ role: "system", content: "be brief" }, { role: "user", content: prompt }];
const cc = await client.chat.completions.create({ model: "m", messages: msgs, max_tokens: 12, temperature: 0 });
out.chat = { text: cc.choices[0].message.content, role: cc.choices[0].message.role, finish: cc.choices[0].finish_reason, usage: cc.usage };

text = ""; chunks = 0; finish = null;
let role = null, usage = null;
const cs = await client.chat.completions.create({ model: "m", messages: msgs, max_tokens: 12, temperature: 0, stream: true,
                                                  stream_options: { include_usage: true } });
for await (const ch of cs) {
  chunks++;
  const d = ch.choices[0]?.delta ?? {};
  role = d.role ?? role;
  text += d.content ?? "";
  finish = ch.choices[0]?.finish_reason ?? finish;
  usage = ch.usage ?? usage;
}
out.chat_stream = { text, chunks, finish, role, usage };

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

try {
  await new OpenAI({ baseURL: base, apiKey: "wrong", maxRetries: 0 }).completions.create({ model: "m", prompt, max_tokens: 1 });
  out.wrong_key = "accepted";
} catch (e) {
  out.wrong_key = e.status;
}
console.log(JSON.stringify(out));
