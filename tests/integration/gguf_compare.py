#!/usr/bin/python3
"""The next-token distribution llama.cpp gives for a GGUF file
(tests/node/gguf_probs.mjs's JSON) against hone's own fp32 forward (hone
generate --logits's JSON, its last position): whether the token ids agree,
the top-1 tokens, max |delta p| and KL(hone || llama.cpp). Prints one line;
exits 1 when ids or top-1 differ or max |dp| exceeds MAXDP (with ANY-TOP1,
the top-1 tokens may differ: 4-bit weights on a tiny model).
usage: gguf_compare.py HONE.json LLAMA.json MAXDP [any-top1]"""
import json
import math
import sys

h, l, maxdp = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
V = h["vocab"]
z = h["logits"][-V:]
mx = max(z)
e = [math.exp(v - mx) for v in z]
s = sum(e)
p = [v / s for v in e]
q = l["probs"]
sq = sum(q)
q = [v / sq for v in q]
dp = max(abs(a - b) for a, b in zip(p, q))
kl = sum(a * math.log(a / max(b, 1e-30)) for a, b in zip(p, q) if a > 0)
same_ids = h["ids"] == l["ids"]
t1, t2 = p.index(max(p)), q.index(max(q))
print(f"ids {'equal' if same_ids else 'DIFFER'}, top-1 {t1} vs {t2}, max |dp| {dp:.2e}, KL {max(kl, 0):.2e}")
any_top1 = len(sys.argv) > 4 and sys.argv[4] == "any-top1"
sys.exit(0 if same_ids and (t1 == t2 or any_top1) and dp <= maxdp else 1)
