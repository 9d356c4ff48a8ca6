#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub on a loopback port, for hub.sh: it
serves the model repositories under ROOT (ROOT/ORG/NAME/FILE) the way the
Hub answers a client:

  GET /api/models/ORG/NAME/revision/REV   {"id", "sha": COMMIT, "siblings": [{"rfilename"}]}
                                          (REV: main or the commit; else 404)
  GET /ORG/NAME/resolve/COMMIT/FILE       the bytes; ETag; for .safetensors (LFS
                                          files) X-Linked-Etag: their sha256; Range
                                          requests answered 206

A repository with a file .gated wants "Authorization: Bearer TOKEN" (the
token in that file); with .corrupt its weights come with a wrong sha256;
with .norange it answers a Range request with the whole file (200). Each
request is logged as one line to ROOT/requests.log.

  hub_server.py ROOT PORT_FILE
"""
import hashlib
import http.server
import json
import os
import sys

root, port_file = sys.argv[1], sys.argv[2]


def files(repo):
    out = []
    for d, _, fs in os.walk(repo):
        for f in fs:
            if not f.startswith("."):
                out.append(os.path.relpath(os.path.join(d, f), repo))
    return sorted(out)


def commit(repo):
    h = hashlib.sha1()
    for f in files(repo):
        h.update(f.encode())
        h.update(open(os.path.join(repo, f), "rb").read())
    return h.hexdigest()


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with open(os.path.join(root, "requests.log"), "a") as log:
            log.write(f"{self.path} {self.headers.get('Range', '-')} {self.headers.get('Authorization', '-')}\n")
        parts = self.path.strip("/").split("/")
        if len(parts) >= 6 and parts[0] == "api" and parts[1] == "models" and parts[4] == "revision":
            repo = os.path.join(root, parts[2], parts[3])
            if not os.path.isdir(repo):
                return self.reply(404, b'{"error": "Repository not found"}')
            if not self.allowed(repo):
                return self.reply(401, b'{"error": "gated"}')
            c = commit(repo)
            if parts[5] not in ("main", c):
                return self.reply(404, b'{"error": "Revision not found"}')
            body = json.dumps({"id": parts[2] + "/" + parts[3], "sha": c,
                               "siblings": [{"rfilename": f} for f in files(repo)]}).encode()
            return self.reply(200, body, [("Content-Type", "application/json")])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = os.path.join(root, parts[0], parts[1])
            path = os.path.join(repo, *parts[4:])
            if not os.path.isfile(path) or parts[3] != commit(repo):
                return self.reply(404, b"Entry not found")
            if not self.allowed(repo):
                return self.reply(401, b"gated")
            data = open(path, "rb").read()
            hd = [("ETag", '"%s"' % hashlib.sha1(data).hexdigest())]
            if path.endswith(".safetensors"):
                sha = hashlib.sha256(data).hexdigest()
                if os.path.exists(os.path.join(repo, ".corrupt")):
                    sha = "0" * 64
                hd.append(("X-Linked-Etag", '"%s"' % sha))
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and not os.path.exists(os.path.join(repo, ".norange")):
                start = int(rng[6:].split("-")[0])
                hd.append(("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data))))
                return self.reply(206, data[start:], hd)
            return self.reply(200, data, hd)
        return self.reply(404, b"not found")

    def allowed(self, repo):
        g = os.path.join(repo, ".gated")
        return not os.path.exists(g) or self.headers.get("Authorization") == "Bearer " + open(g).read().strip()


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
