#!/usr/bin/python3
"""The peer for tests/bench/gpt2.sh: a plain PyTorch GPT-2 (the same
mathematics as engine/ml/gpt2.c: pre-LN blocks, causal attention, gelu_new,
tied head), fp32 on the CPU, AdamW, clipping at 1.0, random tokens.
usage: gpt2_torch.py LAYERS EMBD HEADS T B VOCAB STEPS THREADS"""
import math
import sys
import time

import torch

L, C, H, T, B, V, steps, threads = (int(x) for x in sys.argv[1:9])
torch.set_num_threads(threads)
torch.manual_seed(1)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
        self.c_attn, self.c_proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.c_fc, self.m_proj = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

    def forward(self, x):
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
        s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        x = x + self.c_proj((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C))
        h = self.c_fc(self.ln_2(x))
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
        return x + self.m_proj(h)


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(V, C), torch.nn.Embedding(T, C)
        self.h = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.T


model = GPT()
params = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
t0 = 0
for st in range(steps + 1):
    if st == 1:
        t0 = time.perf_counter()
    ids = torch.randint(0, V, (B, T))
    logits = model(ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
dt = time.perf_counter() - t0
tokens = B * T * steps
flops = 6 * params * tokens + 12 * L * T * C * tokens
print(f"torch  {tokens / dt:.0f} tokens/s  {flops / dt / 1e9:.1f} GFLOP/s  params {params}  loss {loss.item():.4f}  ({steps} steps, {dt:.2f} s)")
