#!/usr/bin/env python3
"""A fuzz of hone serve's request bodies: random JSON, valid requests with
fields of the wrong type, huge or odd numbers, invalid UTF-8, deep nesting,
truncated JSON, random bytes, and bodies cut short of their Content-Length.
Every answered request must get a well-formed HTTP/1.1 response (status
line, headers, a body of its Content-Length or well-formed chunks; errors as
JSON with error.message), and the server must answer /health at the end.

Usage: serve_fuzz.py HOST:PORT COUNT SEED lm|cls   (exit 0: all well-formed)
"""
import json
import random
import socket
import sys

addr, count, seed, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)
port = int(port)
rnd = random.Random(seed)
PATHS = ["/v1/completions", "/v1/chat/completions"] if kind == "lm" else ["/predict", "/batch_predict"]
PATHS += ["/health", "/metrics", "/v1/models", "/nope"]


def rand_str():
    alphabet = "abc xyz\"\\\n\t\u00e9\u4e2d\U0001F600<|im_end|>"
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))


def rand_num():
    return rnd.choice([0, 1, -1, 2, 0.5, -0.0, 1e308, -1e308, 2**63, 2**64 + 1, 10**30, 3.7, 65, 1023, 100000])


def rand_json(depth=0):
    r = rnd.random()
    if depth > 3 or r < 0.3:
        return rnd.choice([None, True, False, rand_num(), rand_str()])
    if r < 0.6:
        return [rand_json(depth + 1) for _ in range(rnd.randint(0, 4))]
    return {rand_str(): rand_json(depth + 1) for _ in range(rnd.randint(0, 4))}


FIELDS = {"prompt": "the cat", "max_tokens": 4, "temperature": 0.5, "top_p": 0.9, "top_k": 5, "seed": 3, "stop": ["x"],
          "n": 1, "stream": False, "messages": [{"role": "user", "content": "hi"}], "text": "a cat", "n_": 2}
WEIRD = [None, True, "str", -1, 0, 1e308, -1e308, 1.5, [], {}, [1, 2], {"a": 1}, "", 2**70, "\u0000"]


def mutated():
    """a plausible request with one or two fields of a wrong type or value"""
    body = dict(FIELDS) if kind == "lm" else {"text": "a cat", "n": 2, "id": "x"}
    if kind == "lm" and rnd.random() < 0.5:
        body.pop("messages")
    for _ in range(rnd.randint(1, 2)):
        body[rnd.choice(list(body) + ["stream_options", "max_completion_tokens"])] = rnd.choice(WEIRD + [rand_json()])
    body["max_tokens"] = min(body.get("max_tokens", 4), 8) if isinstance(body.get("max_tokens"), int) else body.get("max_tokens")
    return json.dumps(body).encode()


def huge_numbers():
    lit = rnd.choice(["1e999", "-1e999", "123456789012345678901234567890", "1e-999", "-0", "0.0000001", "9" * 400, "1E+2"])
    f = rnd.choice(["max_tokens", "temperature", "top_p", "top_k", "seed", "n", "n_"])
    if kind == "lm":
        return ('{"prompt": "the cat", "%s": %s}' % (f, lit)).encode()
    return ('{"text": "a cat", "n": %s}' % lit).encode()


def invalid_utf8():
    bad = rnd.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"])
    key = b"prompt" if kind == "lm" else b"text"
    return b'{"' + key + b'": "a' + bad + b'b", "max_tokens": 3}'


def deep():
    d = rnd.choice([100, 1000, 100000])
    return (b"[" * d + b"]" * d) if rnd.random() < 0.5 else (b'{"a":' * d + b"1" + b"}" * d)


def truncated_json():
    b = json.dumps(FIELDS if kind == "lm" else {"text": "a cat", "n": 2}).encode()
    return b[: rnd.randint(0, len(b) - 1)]


def random_bytes():
    return bytes(rnd.randint(0, 255) for _ in range(rnd.randint(0, 200)))


def read_response(s):
    """the response's status and body; raises ValueError when malformed"""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the headers ended: %r" % data[:200])
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError("bad status line %r" % lines[0])
    headers = {}
    for ln in lines[1:]:
        if ":" not in ln:
            raise ValueError("bad header line %r" % ln)
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    status = int(parts[1])

    def more():
        c = s.recv(65536)
        if not c:
            raise ValueError("connection closed inside the body")
        return c

    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            rest += more()
        body = rest[:n]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += more()
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += more()
            if rest[size:size + 2] != b"\r\n":
                raise ValueError("a chunk not followed by CRLF")
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
    else:
        raise ValueError("neither Content-Length nor chunked: %r" % headers)
    return status, headers, body


def exchange(path, body, method="POST", cut=False):
    s = socket.create_connection((host, port), timeout=30)
    try:
        req = ("%s %s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\nConnection: close\r\n" % (method, path)).encode()
        if cut:  # promise more than is sent, then leave
            s.sendall(req + b"Content-Length: %d\r\n\r\n" % (len(body) + 100) + body)
            return None
        s.sendall(req + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return read_response(s)
    finally:
        s.close()


def check(path, status, headers, body):
    if status >= 400 and path != "/metrics":
        j = json.loads(body.decode("utf-8"))
        if not isinstance(j.get("error", {}).get("message"), str):
            raise ValueError("an error without error.message: %r" % body[:200])
    elif status == 200 and headers.get("content-type", "").startswith("application/json"):
        json.loads(body.decode("utf-8"))
    elif status == 200 and headers.get("content-type", "").startswith("text/event-stream"):
        text = body.decode("utf-8")
        events = [e for e in text.split("\n\n") if e]
        if not events or events[-1] != "data: [DONE]":
            raise ValueError("a stream not ending in [DONE]: %r" % text[-200:])
        for e in events[:-1]:
            if not e.startswith("data: "):
                raise ValueError("an event without data: %r" % e)
            json.loads(e[6:])


gens = [lambda: json.dumps(rand_json()).encode(), mutated, mutated, huge_numbers, invalid_utf8, deep, truncated_json, random_bytes]
seen = {}
for i in range(count):
    path = rnd.choice(PATHS[:2]) if rnd.random() < 0.85 else rnd.choice(PATHS)
    body = rnd.choice(gens)()
    try:
        if rnd.random() < 0.05:
            exchange(path, body, cut=True)
            continue
        status, headers, b = exchange(path, body, method="GET" if rnd.random() < 0.03 else "POST")
        check(path, status, headers, b)
        seen[status] = seen.get(status, 0) + 1
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        print("case %d (%s, %r...): %s" % (i, path, body[:80], e))
        sys.exit(1)
status, _, b = exchange("/health", b"", method="GET")
if status not in (200, 401):
    print("/health after the fuzz: %d %r" % (status, b))
    sys.exit(1)
print("statuses: %s" % ", ".join("%d x%d" % kv for kv in sorted(seen.items())))
