"""Train a small GPT-style language model with torch AdamW and with bitsandbytes AdamW8bit and
AdamW4bit, side by side, and show that 8-bit and 4-bit optimizer state train to the same loss;
then store the trained model's linear layers as 4-bit NF4 weights (bnb.nn.Linear4bit) and
compare its validation loss and weight memory with the 16-bit model's.

The corpus is the Python standard library's own source code (on every machine, no
download), read as bytes: every 10th file is held out for validation. Each seed trains the
same model from the same initialisation on the same batches once per optimizer; the spread
between seeds is the noise the 8-bit/32-bit and 4-bit/32-bit differences are measured
against. As the Hugging Face Trainer does, the quantized runs keep 32-bit state for the
embeddings (through GlobalOptimManager.register_module_override); --all-8bit quantizes them too.

    python examples/train_lm.py                 # CPU: a few minutes; CUDA when present
    python examples/train_lm.py --steps 1000 --seeds 0 1 2 --out examples/out
    python examples/train_lm.py --optimizers torch 4bit --seeds 0 1 2 3    # 4-bit against 32-bit only

Prints progress, the loss curves side by side, the optimizer-state memory of each
optimizer, and saves examples/out/loss_curves.png and results.json.
"""
import argparse
import copy
import glob
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bitsandbytes as bnb  # noqa: E402
from bitsandbytes.utils import optimizer_state_bytes  # noqa: E402


def load_corpus():
    """The standard library's .py files as two byte tensors (train, validation)."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    train, val = [], []
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            (val if i % 10 == 0 else train).append(f.read())
    as_tensor = lambda chunks: torch.frombuffer(bytearray(b"\n".join(chunks)), dtype=torch.uint8).long()
    return as_tensor(train), as_tensor(val)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """A byte-level GPT: token and position embeddings, pre-norm blocks, a linear head."""

    def __init__(self, d=128, layers=4, heads=4, ctx=128, vocab=256):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def batches(data, batch, ctx, seed, device):
    g = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(0, len(data) - ctx - 1, (batch,), generator=g)
        x = torch.stack([data[s:s + ctx] for s in starts])
        y = torch.stack([data[s + 1:s + ctx + 1] for s in starts])
        yield x.to(device), y.to(device)


@torch.no_grad()
def evaluate(model, val, ctx, device, batches_=8, batch=16):
    model.eval()
    g = batches(val, batch, ctx, seed=1234, device=device)  # the same validation batches for every run
    loss = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in (next(g) for _ in
                                                                                          range(batches_)))
    model.train()
    return loss / batches_


OPTIMIZERS = {
    "torch AdamW (32-bit state)": lambda params, lr: torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95),
                                                                      weight_decay=0.1),
    "bnb AdamW8bit (8-bit state)": lambda params, lr: bnb.optim.AdamW8bit(params, lr=lr, betas=(0.9, 0.95),
                                                                         weight_decay=0.1),
    "bnb AdamW4bit (4-bit state)": lambda params, lr: bnb.optim.AdamW4bit(params, lr=lr, betas=(0.9, 0.95),
                                                                         weight_decay=0.1),
}


def train(name, seed, data, args):
    train_data, val = data
    torch.manual_seed(seed)
    model = GPT(d=args.d, layers=args.layers, heads=args.heads, ctx=args.ctx).to(args.device)
    if not args.all_8bit:
        # what the Hugging Face Trainer does for quantized optimizers: embeddings keep 32-bit state
        mng = bnb.optim.GlobalOptimManager.get_instance()
        for emb in (model.tok, model.pos):
            mng.register_module_override(emb, "weight", {"optim_bits": 32})
    opt = OPTIMIZERS[name](model.parameters(), args.lr)
    stream = batches(train_data, args.batch, args.ctx, seed, args.device)
    curve, start = [], time.time()
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = max(lr, args.lr * 0.05)
        x, y = next(stream)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            v = evaluate(model, val, args.ctx, args.device)
            curve.append((step, loss.item(), v))
            print(f"  [{name:28s} seed {seed}] step {step:5d}  train {loss.item():.4f}  val {v:.4f}  "
                  f"({time.time() - start:.0f}s)", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    return dict(optimizer=name, seed=seed, curve=curve, final_val=curve[-1][2],
                state_bytes=optimizer_state_bytes(opt),
                params=n_params, seconds=time.time() - start), model


def linear_weight_bytes(model):
    """Bytes of the linear layers' weights (4-bit: packed codes plus their quant state)."""
    total = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            total += m.weight.numel() * m.weight.element_size()
            total += sum(t.numel() * t.element_size() for t in qs.as_dict(packed=True).values())
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total


def to_nf4(model, dtype):
    """A copy of `model` in `dtype` whose linear layers hold NF4 weights (double quantization)."""
    q = copy.deepcopy(model).to(dtype)
    for block in q.blocks:
        for name in ("qkv", "proj", "fc", "out"):
            lin = getattr(block, name)
            layer = bnb.nn.Linear4bit(lin.in_features, lin.out_features, compute_dtype=dtype, quant_type="nf4",
                                      compress_statistics=True)
            layer.load_state_dict(lin.state_dict())
            setattr(block, name, layer)
    return q.to(next(model.parameters()).device)


def four_bit_summary(model, val, args):
    """Validation loss and linear-weight memory of the trained model in float32, in bfloat16 and
    with NF4 linear weights (computing in bfloat16 on CUDA, float32 on the CPU)."""
    nf4_dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    variants = (("float32 (trained model)", copy.deepcopy(model)),
                ("bfloat16", copy.deepcopy(model).to(torch.bfloat16)),
                (f"NF4 (bnb.nn.Linear4bit, {str(nf4_dtype).removeprefix('torch.')} compute)", to_nf4(model, nf4_dtype)))
    rows = ["| weights | val loss | linear weights |", "|---|---|---|"]
    with torch.no_grad():
        for label, m in variants:
            v = evaluate(m, val, args.ctx, args.device)
            rows.append(f"| {label} | {v:.4f} | {linear_weight_bytes(m) / 1e6:.3f} MB |")
    return "\n".join(rows)


def side_by_side(runs):
    names = [f"{r['optimizer'].split(' (')[0]} s{r['seed']}" for r in runs]
    lines = ["| step | " + " | ".join(f"val {n}" for n in names) + " |", "|---" * (len(runs) + 1) + "|"]
    for i, (step, _, _) in enumerate(runs[0]["curve"]):
        lines.append(f"| {step} | " + " | ".join(f"{r['curve'][i][2]:.4f}" for r in runs) + " |")
    return "\n".join(lines)


def summary(runs):
    by_opt = {}
    for r in runs:
        by_opt.setdefault(r["optimizer"], []).append(r)
    lines = ["| optimizer | final val loss per seed | mean | optimizer state |", "|---|---|---|---|"]
    means = {}
    for name, rs in by_opt.items():
        finals = [r["final_val"] for r in rs]
        means[name] = sum(finals) / len(finals)
        lines.append(f"| {name} | {', '.join(f'{f:.4f}' for f in finals)} | {means[name]:.4f} | "
                     f"{rs[0]['state_bytes'] / 1e6:.2f} MB ({rs[0]['state_bytes'] / rs[0]['params']:.2f} B/param) |")
    if len(by_opt) < 2 or "torch" not in next(iter(by_opt)):
        return "\n".join(lines)  # no 32-bit run to compare with
    (n32, r32), quantized = next(iter(by_opt.items())), list(by_opt.items())[1:]
    seeds = sorted({r["seed"] for r in runs})
    spread32 = max(r["final_val"] for r in r32) - min(r["final_val"] for r in r32)
    lines.append("")
    if len(seeds) > 1:
        lines.append(f"seed noise (spread of the 32-bit final loss over seeds {seeds}): {spread32:.4f}")
    for nq, rq in quantized:
        bits = nq.split("(")[-1].split(" ")[0]  # "8-bit", "4-bit"
        per_seed = [b["final_val"] - a["final_val"] for a, b in zip(r32, rq)]
        lines.append(f"{bits} minus 32-bit, mean final val loss: {means[nq] - means[n32]:+.4f}; per seed: "
                     f"{', '.join(f'{d:+.4f}' for d in per_seed)}")
        if len(seeds) > 1:
            verdict = abs(means[nq] - means[n32]) <= max(spread32, 1e-9)
            lines.append(f"{bits} ends within seed noise of 32-bit: " + ("yes" if verdict else "NO"))
    return "\n".join(lines)


def plot(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        steps = [c[0] for c in r["curve"]]
        style = "-" if "torch" in r["optimizer"] else "--" if "8-bit" in r["optimizer"] else ":"
        ax.plot(steps, [c[2] for c in r["curve"]], style, label=f"{r['optimizer']}, seed {r['seed']}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.set_title("byte-level GPT on the Python standard library")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ctx", type=int, default=64)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--all-8bit", action="store_true",
                        help="quantized state for the embeddings too (default: 32-bit for them, as the HF Trainer "
                             "does)")
    parser.add_argument("--optimizers", nargs="+", default=None,
                        help="substrings of the optimizers to run (default all: torch 8bit 4bit)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in OPTIMIZERS if not args.optimizers or any(k in n for k in args.optimizers)]
    if not names:
        parser.error(f"--optimizers {args.optimizers} matches none of {list(OPTIMIZERS)}")
    data = load_corpus()
    print(f"corpus: {len(data[0]) / 1e6:.1f} MB train, {len(data[1]) / 1e6:.1f} MB validation (Python stdlib "
          f"source, bytes); device {args.device}")
    runs, first_model = [], None
    for seed in args.seeds:
        for name in names:
            run, model = train(name, seed, data, args)
            runs.append(run)
            first_model = first_model or model
    runs.sort(key=lambda r: (list(OPTIMIZERS).index(r["optimizer"]), r["seed"]))
    print(f"\nmodel: {runs[0]['params'] / 1e6:.2f}M parameters, {args.steps} steps, batch {args.batch} x {args.ctx}\n")
    print(side_by_side(runs))
    print()
    text = summary(runs)
    print(text)
    print(f"\n4-bit inference: the first run's model (seed {args.seeds[0]}) with NF4 linear weights\n")
    four_bit = four_bit_summary(first_model, data[1], args)
    print(four_bit)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(dict(args=vars(args), runs=runs, four_bit=four_bit), f, indent=2)
    plot(runs, os.path.join(args.out, "loss_curves.png"))


if __name__ == "__main__":
    main()
