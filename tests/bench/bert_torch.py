#!/usr/bin/python3
"""The peer for tests/bench/bert.sh: a plain PyTorch BERT (the same
mathematics as engine/models/bert.c: word + position + token-type
embeddings and LayerNorm, post-LN blocks of bidirectional attention with a
padding mask and an erf-GELU MLP, pooler + classifier), fp32 on the CPU,
AdamW, clipping at 1.0, random tokens and labels, a sequence classifier's
training step. Attention as transformers' eager path computes it.
usage: bert_torch.py LAYERS HIDDEN HEADS INTER T B VOCAB STEPS THREADS"""
import sys
import time

import torch
import torch.nn.functional as F

L, C, H, I, T, B, V, steps, threads = (int(x) for x in sys.argv[1:10])
torch.set_num_threads(threads)
torch.manual_seed(1)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.o = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.ln1, self.ln2 = torch.nn.LayerNorm(C, eps=1e-12), torch.nn.LayerNorm(C, eps=1e-12)
        self.i, self.out = torch.nn.Linear(C, I), torch.nn.Linear(I, C)

    def forward(self, x, mask):
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        s = (q @ k.transpose(-1, -2)) * (C // H) ** -0.5 + mask
        a = torch.softmax(s, -1) @ v
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(B, T, C)))
        return self.ln2(x + self.out(F.gelu(self.i(x))))


class Bert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word, self.pos, self.typ = torch.nn.Embedding(V, C), torch.nn.Embedding(T, C), torch.nn.Embedding(2, C)
        self.ln = torch.nn.LayerNorm(C, eps=1e-12)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.pool, self.cls = torch.nn.Linear(C, C), torch.nn.Linear(C, 2)

    def forward(self, ids, types, mask):
        x = self.ln(self.word(ids) + self.typ(types) + self.pos(torch.arange(T)))
        m = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # additive, as transformers
        for b in self.blocks:
            x = b(x, m)
        return self.cls(torch.tanh(self.pool(x[:, 0])))


model = Bert()
params = sum(p.numel() for p in model.parameters())
emb = model.word.weight.numel() + model.pos.weight.numel() + model.typ.weight.numel()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
t0 = 0
for st in range(steps + 1):
    if st == 1:
        t0 = time.perf_counter()
    ids = torch.randint(0, V, (B, T))
    labels = torch.randint(0, 2, (B,))
    logits = model(ids, torch.zeros_like(ids), torch.ones_like(ids))
    loss = F.cross_entropy(logits, labels)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
dt = time.perf_counter() - t0
tokens = B * T * steps
flops = 6 * (params - emb) * tokens + 12 * L * T * C * tokens
print(f"torch  {tokens / dt:.0f} tokens/s  {flops / dt / 1e9:.1f} GFLOP/s  params {params}  loss {loss.item():.4f}  ({steps} steps, {dt:.2f} s)")
