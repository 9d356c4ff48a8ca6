#!/usr/bin/python3
"""The peer for tests/bench/train.sh: the same model, optimizer, schedule and
batch as hone's train stage in the spam benchmark, in PyTorch on the CPU.

  EmbeddingBag(vocab + buckets, dim, mean) over token ids and hashed bigrams
  -> Linear(dim, hidden) -> ReLU -> Dropout -> Linear(hidden, classes)
  cross-entropy, AdamW(lr, betas (0.9, 0.999), eps 1e-8, weight decay 0.01),
  linear warmup + cosine decay (LambdaLR), clipping to global norm 1.0.

Bigram rows are computed before the clock starts (hone hashes them inside
its timed loop). Prints "torch: N examples in S s = R examples/s".

usage: train_torch.py ROWS.jsonl TOKENS.u32 THREADS EPOCHS BATCH DIM BUCKETS HIDDEN LR WARMUP
"""
import json
import math
import sys
import time

import numpy as np
import torch

rows_path, tok_path = sys.argv[1], sys.argv[2]
threads, epochs, batch, dim, buckets, hidden = (int(x) for x in sys.argv[3:9])
lr, warmup = float(sys.argv[9]), int(sys.argv[10])
torch.set_num_threads(threads)
torch.manual_seed(1)
vocab = 50257

ids = np.fromfile(tok_path, dtype=np.uint32).astype(np.int64)
rows = [json.loads(l) for l in open(rows_path)]
classes = sorted({r["label"] for r in rows})
y_all = torch.tensor([classes.index(r["label"]) for r in rows])
bags = []
for r in rows:
    a = ids[r["tok_off"]: r["tok_off"] + r["tok_len"]]
    if buckets and len(a) > 1:
        h = ((a[:-1].astype(np.uint64) << np.uint64(32)) | a[1:].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        a = np.concatenate([a, vocab + ((h >> np.uint64(32)) % np.uint64(buckets)).astype(np.int64)])
    bags.append(torch.from_numpy(a))

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.EmbeddingBag(vocab + buckets, dim, mode="mean")
        self.fc = torch.nn.Linear(dim, hidden)
        self.drop = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(hidden, len(classes))

    def forward(self, flat, offsets):
        return self.head(self.drop(torch.relu(self.fc(self.emb(flat, offsets)))))

model = Model()
opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
n = len(rows)
spe = (n + batch - 1) // batch
total = spe * epochs

def factor(step):
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))

sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
lossf = torch.nn.CrossEntropyLoss()
g = torch.Generator().manual_seed(1)
t0 = time.perf_counter()
seen = 0
for epoch in range(epochs):
    perm = torch.randperm(n, generator=g)
    for b in range(spe):
        idx = perm[b * batch:(b + 1) * batch]
        parts = [bags[i] for i in idx.tolist()]
        offsets = torch.tensor([0] + [len(p) for p in parts[:-1]]).cumsum(0)
        flat = torch.cat(parts)
        opt.zero_grad()
        loss = lossf(model(flat, offsets), y_all[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        seen += len(idx)
dt = time.perf_counter() - t0
print(f"torch: {seen} examples in {dt:.2f} s = {seen / dt:.0f} examples/s (final loss {loss.item():.4f})")
