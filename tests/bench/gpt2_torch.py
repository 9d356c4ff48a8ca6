#!/usr/bin/python3
"""The peer for tests/bench/gpt2.sh and gpu.sh: a plain PyTorch GPT-2 (the
same mathematics as engine/models/gpt2.c: pre-LN blocks, causal attention,
gelu_new, tied head), AdamW, clipping at 1.0, random tokens. fp32 on the CPU
by default; MODE on the GPU: fp32 (no TF32), bf16 (autocast, fused AdamW,
flash attention through scaled_dot_product_attention), bf16-compile (the same
under torch.compile); peak: the GPU's bf16 and fp32 matrix rates.
usage: gpt2_torch.py LAYERS EMBD HEADS T B VOCAB STEPS THREADS [MODE]"""
import math
import sys
import time

import torch

L, C, H, T, B, V, steps, threads = (int(x) for x in sys.argv[1:9])
MODE = sys.argv[9] if len(sys.argv) > 9 else "cpu"
torch.set_num_threads(threads)
torch.manual_seed(1)
dev = "cpu" if MODE == "cpu" else "cuda"
if dev == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

if MODE == "peak":
    for dt, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        n = 8192
        a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        print(f"peak   {name} matrix product {2 * n ** 3 * 10 / (time.perf_counter() - t0) / 1e12:.1f} TFLOP/s (8192^3, random)")
    sys.exit(0)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
        self.c_attn, self.c_proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.c_fc, self.m_proj = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

    def forward(self, x):
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        if dev == "cuda":
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
            a = torch.softmax(s, -1) @ v
        x = x + self.c_proj(a.transpose(1, 2).reshape(B, T, C))
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
        x = self.wte(ids) + self.wpe(torch.arange(T, device=ids.device))
        for b in self.h:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.T


model = GPT().to(dev)
params = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01, **({"fused": True} if dev == "cuda" else {}))
fwd = torch.compile(model) if MODE == "bf16-compile" else model
warm = 3 if MODE == "bf16-compile" else 1


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


for _ in range(warm):
    step()
if dev == "cuda":
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
for st in range(steps):
    loss = step()
if dev == "cuda":
    torch.cuda.synchronize()
dt = time.perf_counter() - t0
tokens = B * T * steps
flops = 6 * params * tokens + 12 * L * T * C * tokens
if dev == "cuda":
    print(f"torch  {tokens / dt:.0f} tokens/s  {flops / dt / 1e12:.2f} TFLOP/s  params {params}  loss {loss.item():.4f}  "
          f"({steps} steps, {dt:.3f} s, {MODE}; peak memory {torch.cuda.max_memory_allocated() / 2 ** 20:.0f} MiB)")
else:
    print(f"torch  {tokens / dt:.0f} tokens/s  {flops / dt / 1e9:.1f} GFLOP/s  params {params}  loss {loss.item():.4f}  ({steps} steps, {dt:.2f} s)")
