#!/usr/bin/env python3
"""Streams from hone serve's /v1/completions with C concurrent clients, each
making R requests in turn (max_tokens M, greedy): aggregate tokens/s over the
wall time, and the time to first token (the first SSE event with text), p50
and p99. Usage: serve_gen.py HOST:PORT C R M   Prints one JSON line."""
import http.client
import json
import sys
import threading
import time

addr, C, R, M = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host, port = addr.rsplit(":", 1)
ttft, tokens, errors = [], [0], [0]
lock = threading.Lock()


def client(k):
    for r in range(R):
        body = json.dumps({"prompt": "the cat sat on the mat %d %d" % (k, r), "max_tokens": M, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}})
        c = http.client.HTTPConnection(host, int(port), timeout=120)
        t0 = time.time()
        first = None
        made = 0
        try:
            c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            res = c.getresponse()
            if res.status != 200:
                raise RuntimeError(res.status)
            for line in res:
                line = line.strip()
                if not line.startswith(b"data: {"):
                    continue
                ev = json.loads(line[6:])
                if first is None and ev["choices"][0]["text"]:
                    first = time.time() - t0
                if ev.get("usage"):
                    made = ev["usage"]["completion_tokens"]
            with lock:
                ttft.append(first if first is not None else time.time() - t0)
                tokens[0] += made
        except Exception:  # noqa: BLE001
            with lock:
                errors[0] += 1
        finally:
            c.close()


t0 = time.time()
ths = [threading.Thread(target=client, args=(k,)) for k in range(C)]
for t in ths:
    t.start()
for t in ths:
    t.join()
wall = time.time() - t0
ttft.sort()


def pct(p):
    return ttft[min(len(ttft) - 1, int(p * len(ttft)))] if ttft else 0


print(json.dumps({"clients": C, "requests": C * R, "errors": errors[0], "tokens": tokens[0], "seconds": round(wall, 3),
                  "tokens_per_s": round(tokens[0] / wall, 1), "ttft_p50_ms": round(pct(0.5) * 1000, 1),
                  "ttft_p99_ms": round(pct(0.99) * 1000, 1)}))
