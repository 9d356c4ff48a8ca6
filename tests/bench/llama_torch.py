#!/usr/bin/python3
"""The peer for tests/bench/llama.sh: a plain PyTorch Llama (the same
mathematics as engine/models/llama.c: RMSNorm, rotary embeddings in the
rotate_half layout, grouped-query heads repeated as repeat_kv does, causal
softmax attention, SwiGLU MLP, untied head, no biases), AdamW, clipping at
1.0, random tokens, fp32 on THREADS CPU threads (Debian python3-torch); on
the GPU with MODE fp32 (no TF32) or bf16 (autocast, fused AdamW,
scaled_dot_product_attention) or bf16-compile (the same under
torch.compile).
usage: llama_torch.py LAYERS EMBD HEADS KV_HEADS INTER T B VOCAB STEPS THREADS [MODE]"""
import math
import sys
import time

import torch

L, C, H, Hk, I, T, B, V, steps, threads = (int(x) for x in sys.argv[1:11])
MODE = sys.argv[11] if len(sys.argv) > 11 else "cpu"
torch.set_num_threads(threads)
torch.manual_seed(1)
dev = "cpu" if MODE == "cpu" else "cuda"
if dev == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
D = C // H


class RMSNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(C))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def rotate_half(x):
    return torch.cat([-x[..., D // 2:], x[..., :D // 2]], -1)


inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D))
ang = torch.arange(T).float()[:, None] * inv[None, :]
emb = torch.cat([ang, ang], -1)
COS, SIN = emb.cos().to(dev), emb.sin().to(dev)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(), RMSNorm()
        self.q, self.k, self.v = (torch.nn.Linear(C, n * D, bias=False) for n in (H, Hk, Hk))
        self.o = torch.nn.Linear(H * D, C, bias=False)
        self.gate, self.up = torch.nn.Linear(C, I, bias=False), torch.nn.Linear(C, I, bias=False)
        self.down = torch.nn.Linear(I, C, bias=False)

    def forward(self, x):
        h = self.n1(x)
        q = self.q(h).view(B, T, H, D).transpose(1, 2)
        k = self.k(h).view(B, T, Hk, D).transpose(1, 2)
        v = self.v(h).view(B, T, Hk, D).transpose(1, 2)
        q, k = q * COS + rotate_half(q) * SIN, k * COS + rotate_half(k) * SIN
        k = k[:, :, None].expand(B, Hk, H // Hk, T, D).reshape(B, H, T, D)
        v = v[:, :, None].expand(B, Hk, H // Hk, T, D).reshape(B, H, T, D)
        if dev == "cuda":
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
            a = torch.softmax(s, -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(B, T, H * D))
        h = self.n2(x)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


class Llama(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, C)
        self.layers = torch.nn.ModuleList(Block() for _ in range(L))
        self.norm = RMSNorm()
        self.head = torch.nn.Linear(C, V, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for b in self.layers:
            x = b(x)
        return self.head(self.norm(x))


model = Llama().to(dev)
fwd = torch.compile(model) if MODE == "bf16-compile" else model
params = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01, **({"fused": True} if dev == "cuda" else {}))


def step():
    ids = torch.randint(0, V, (B, T), device=dev)
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=MODE.startswith("bf16")):
        logits = fwd(ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V).float(), ids[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


for _ in range(3 if MODE == "bf16-compile" else 1):
    step()
if dev == "cuda":
    torch.cuda.synchronize()
t0 = time.perf_counter()
for st in range(steps):
    loss = step()
if dev == "cuda":
    torch.cuda.synchronize()
dt = time.perf_counter() - t0
tokens = B * T * steps
flops = 6 * params * tokens + 12 * L * T * C * tokens
unit, scale = ("TFLOP/s", 1e12) if dev == "cuda" else ("GFLOP/s", 1e9)
print(f"torch  {tokens / dt:.0f} tokens/s  {flops / dt / scale:.1f} {unit}  params {params}  loss {loss.item():.4f}  "
      f"({steps} steps, {dt:.2f} s, {MODE})")
