"""Greedy generation with a LLaMA-shaped model (about 1B parameters: 16 layers, hidden 2048,
MLP 5632, 16 heads, vocabulary 32000; random weights) in bf16, in LLM.int8() and in NF4: tokens
per second at batch 1 and 16, 128 new tokens, plain torch and our layers in the same run.

The model is written here in plain torch (RMSNorm, rotary positions, a preallocated KV cache,
SwiGLU); its seven linears a layer are torch.nn.Linear (bf16), bnb.nn.Linear8bitLt (int8
weights, threshold 6.0) or bnb.nn.LinearNF4 (bf16 compute, double quantization); the LM head
stays bf16, as transformers keeps it. A decode step is captured in a CUDA graph where the
layers allow it (as serving stacks run decode), else run eagerly; the table says which.

    python benchmarks/bench_generate.py [--new-tokens 128] [--out DIR]
"""
import argparse
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench_common, and this checkout's bitsandbytes
import bitsandbytes as bnb  # noqa: E402
from bench_common import device_name, markdown_table, write_json  # noqa: E402

CONFIG = dict(layers=16, hidden=2048, mlp=5632, heads=16, vocab=32000)


class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(v + 1e-6)).to(x.dtype) * self.weight


class Layer(torch.nn.Module):
    def __init__(self, hidden, mlp, heads):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731
        self.q, self.k, self.v, self.o = (lin(hidden, hidden) for _ in range(4))
        self.gate, self.up, self.down = lin(hidden, mlp), lin(hidden, mlp), lin(mlp, hidden)
        self.norm1, self.norm2 = RMSNorm(hidden), RMSNorm(hidden)

    def forward(self, x, cache_k, cache_v, pos, cos, sin, mask):
        B = x.shape[0]
        h = self.norm1(x)
        shape = (B, 1, self.heads, self.head_dim)
        q, k, v = (p(h).view(shape).transpose(1, 2) for p in (self.q, self.k, self.v))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        cache_k.index_copy_(2, pos, k)
        cache_v.index_copy_(2, pos, v)
        a = torch.nn.functional.scaled_dot_product_attention(q, cache_k, cache_v, attn_mask=mask)
        x = x + self.o(a.transpose(1, 2).reshape(B, 1, -1))
        h = self.norm2(x)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


def rotate(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Model(torch.nn.Module):
    def __init__(self, layers, hidden, mlp, heads, vocab):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.layers = torch.nn.ModuleList(Layer(hidden, mlp, heads) for _ in range(layers))
        self.norm = RMSNorm(hidden)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)
        self.heads, self.head_dim = heads, hidden // heads

    def step(self, tokens, caches, pos, max_len):
        """One decode step for tokens [B, 1] at position pos (a one-element tensor): logits [B, V]."""
        half = self.head_dim // 2
        inv = 1.0 / (10000 ** (torch.arange(half, device=tokens.device, dtype=torch.float32) / half))
        ang = pos.float().unsqueeze(-1) * inv
        cos, sin = ang.cos().to(torch.bfloat16), ang.sin().to(torch.bfloat16)
        mask = (torch.arange(max_len, device=tokens.device) <= pos).view(1, 1, 1, max_len)  # positions 0..pos
        x = self.embed(tokens)
        for layer, (ck, cv) in zip(self.layers, caches):
            x = layer(x, ck, cv, pos, cos, sin, mask)
        return self.lm_head(self.norm(x))[:, -1].float()


LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


def build(mode, state, device):
    with torch.device("meta"):
        model = Model(**CONFIG)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    model.load_state_dict(state)
    if mode != "bf16":
        for layer in model.layers:
            for name in LINEARS:
                old = getattr(layer, name)
                if mode == "int8":
                    new = bnb.nn.Linear8bitLt(old.in_features, old.out_features, bias=False, has_fp16_weights=False,
                                              threshold=6.0)
                else:
                    new = bnb.nn.LinearNF4(old.in_features, old.out_features, bias=False,
                                           compute_dtype=torch.bfloat16)
                new.load_state_dict(old.state_dict())  # quantized when moved to the device
                setattr(layer, name, new)
    return model.to(device)


def generate(model, batch, new_tokens, use_graph, device):
    """Tokens per second of greedy decoding of new_tokens tokens after one start token."""
    max_len = new_tokens + 1
    H, D = model.heads, model.head_dim
    caches = [(torch.zeros(batch, H, max_len, D, device=device, dtype=torch.bfloat16),
               torch.zeros(batch, H, max_len, D, device=device, dtype=torch.bfloat16)) for _ in model.layers]
    tokens = torch.ones(batch, 1, device=device, dtype=torch.long)
    pos = torch.zeros(1, device=device, dtype=torch.long)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        logits = model.step(tokens, caches, pos, max_len)
        tokens.copy_(logits.argmax(-1, keepdim=True))
        pos.add_(1)

    with torch.no_grad():
        step()  # warm up (and quantize on first use)
        pos.zero_()
        runner = step
        if use_graph:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                step()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            runner = graph.replay
        pos.zero_()
        sync()
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            runner()
        sync()
        elapsed = time.perf_counter() - t0
    return batch * new_tokens / elapsed


def weight_gib(model):
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total / 2**30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--out", default=None)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model of width 256 (a smoke test, CPU too)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.tiny:
        CONFIG.update(layers=2, hidden=256, mlp=512, heads=4, vocab=1000)
    torch.manual_seed(0)
    with torch.device("meta"):
        shape_model = Model(**CONFIG)
    state = {k: (torch.randn(v.shape, dtype=torch.bfloat16) / math.sqrt(v.shape[-1]) if v.dim() > 1
                 else torch.ones(v.shape, dtype=torch.bfloat16)) for k, v in shape_model.state_dict().items()}
    rows = []
    for mode in ("bf16", "int8", "nf4"):
        model = build(mode, state, device)
        gib = weight_gib(model)
        for batch in (1, 16):
            tps = None
            if device == "cuda":
                try:
                    tps, how = generate(model, batch, args.new_tokens, True, device), "CUDA graph"
                except Exception as e:  # a layer that cannot be captured: eager decode
                    torch.cuda.synchronize()
                    how = f"eager (capture failed: {type(e).__name__})"
            if tps is None:
                tps = generate(model, batch, args.new_tokens, False, device)
                how = how if device == "cuda" else "eager"
            rows.append({"layers": mode, "batch": batch, "tokens/s": f"{tps:.0f}", "decode": how,
                         "weights GiB": f"{gib:.2f}"})
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    base = {r["batch"]: float(r["tokens/s"]) for r in rows if r["layers"] == "bf16"}
    for r in rows:
        r["vs bf16"] = f"{float(r['tokens/s']) / base[r['batch']]:.2f}x"
    write_json(args.out, "bench_generate.json", {"device": device_name(), "config": CONFIG,
                                                 "new_tokens": args.new_tokens, "rows": rows})
    print(f"device: {device_name()}  model: {CONFIG}  new tokens: {args.new_tokens}")
    print(markdown_table(rows, ["layers", "batch", "tokens/s", "vs bf16", "decode", "weights GiB"]))


if __name__ == "__main__":
    main()
