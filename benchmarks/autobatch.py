"""ember.autobatch vs PyTorch eager (one instance at a time) vs DyNet's autobatching, and ember
with each static optimization turned off, on three dynamic models (one run, ratios):

- TreeLSTM (hidden 256) over random binary trees with 8-32 leaves (seed 0), 8 and 64 trees;
- an if/else on a computed value: h = enc(x); two deep layers if gate(h) > 0 else one; head;
- a variable-length RNN (Elman cell, hidden 256, 5-30 steps) from a shared initial state.

Every implementation's outputs are checked against eager (1e-5) before timing. DyNet (PyPI
`dynet38`, autobatch on, its own single-threaded CPU kernels) runs the same models with the same
weights. Run: python -m benchmarks.autobatch [--quick | --breakdown]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _harness import Row, compare, environment, print_table, write_jsonl

import ember.autobatch as ab
from ember.examples.autobatch_models import Layer, LeafCell, NodeCell, RNNCell, random_tree

HIDDEN = 256
VOCAB = 1000


# ---- ember / eager programs (the same function runs eagerly outside ab.run) ----


def treelstm(leaf: Callable[..., Any], node: Callable[..., Any]) -> Callable[[Any], Any]:
    def encode(tree: Any) -> Any:
        if isinstance(tree, int):
            return leaf(torch.tensor([tree]))
        return node(*encode(tree[0]), *encode(tree[1]))

    return encode


def branchy(layers: dict[str, nn.Module]) -> Callable[[Any], Any]:
    enc, gate, deep1, deep2, shallow, head = (ab.block(m, name=k) for k, m in layers.items())

    def classify(x: torch.Tensor) -> torch.Tensor:
        h = enc(x)
        if gate(h).item() > 0:  # noqa: SIM108  (an if statement: the ghost pass pads it)
            h = deep2(deep1(h))
        else:
            h = shallow(h)
        return head(h)

    return classify


def rnn(cell_module: RNNCell) -> Callable[[Any], Any]:
    cell, h0 = ab.block(cell_module), torch.zeros(1, HIDDEN)

    def run_sequence(seq: torch.Tensor) -> torch.Tensor:
        h = h0
        for t in range(seq.shape[0]):
            h = cell(seq[t : t + 1], h)
        return h

    return run_sequence


# ---- DyNet versions, same weights ----

_KEEP: list[Any] = []  # parameter collections and their arrays: DyNet frees them with the object


def _dy_linear(pc: Any, linear: nn.Linear) -> tuple[Any, Any]:
    arrays = [linear.weight.detach().numpy().copy(), linear.bias.detach().numpy().copy()]
    _KEEP.extend(arrays)
    return pc.parameters_from_numpy(arrays[0]), pc.parameters_from_numpy(arrays[1])


def _dy_affine(dy: Any, wb: tuple[Any, Any], x: Any) -> Any:
    return dy.affine_transform([wb[1], wb[0], x])


def dynet_treelstm(dy: Any, leaf: LeafCell, node: NodeCell) -> Callable[[list[Any]], list[Any]]:
    pc = dy.ParameterCollection()
    _KEEP.append(pc)
    _KEEP.append(leaf.emb.weight.detach().numpy().copy())
    emb = pc.lookup_parameters_from_numpy(_KEEP[-1])
    lw, nw = _dy_linear(pc, leaf.gates), _dy_linear(pc, node.gates)
    hs = HIDDEN

    def enc(tree: Any) -> Any:
        if isinstance(tree, int):
            g = _dy_affine(dy, lw, dy.lookup(emb, tree))
            i, o, u = (dy.pick_range(g, k * hs, (k + 1) * hs) for k in range(3))
            c = dy.cmult(dy.logistic(i), dy.tanh(u))
            return dy.cmult(dy.logistic(o), dy.tanh(c)), c
        (hl, cl), (hr, cr) = enc(tree[0]), enc(tree[1])
        g = _dy_affine(dy, nw, dy.concatenate([hl, hr]))
        i, o, u, fl, fr = (dy.pick_range(g, k * hs, (k + 1) * hs) for k in range(5))
        c = (
            dy.cmult(dy.logistic(i), dy.tanh(u))
            + dy.cmult(dy.logistic(fl), cl)
            + dy.cmult(dy.logistic(fr), cr)
        )
        return dy.cmult(dy.logistic(o), dy.tanh(c)), c

    def run(trees: list[Any]) -> list[Any]:
        dy.renew_cg()
        outs = [enc(t) for t in trees]
        dy.forward([x for pair in outs for x in pair])
        return [tuple(torch.from_numpy(x.npvalue()).float()[None] for x in p) for p in outs]

    return run


def dynet_branchy(dy: Any, layers: dict[str, nn.Module]) -> Callable[[list[Any]], list[Any]]:
    pc = dy.ParameterCollection()
    _KEEP.append(pc)
    wb = {k: _dy_linear(pc, m.linear if isinstance(m, Layer) else m) for k, m in layers.items()}

    def layer(k: str, x: Any) -> Any:
        y = _dy_affine(dy, wb[k], x)
        return dy.tanh(y) if isinstance(layers[k], Layer) else y

    def run(xs: list[torch.Tensor]) -> list[Any]:
        dy.renew_cg()
        hs = [layer("enc", dy.inputTensor(x[0].numpy())) for x in xs]
        gates = [layer("gate", h) for h in hs]
        dy.forward(gates)  # the branch needs every gate's value: one batched evaluation
        outs = []
        for h, g in zip(hs, gates, strict=True):
            h = layer("deep2", layer("deep1", h)) if g.value() > 0 else layer("shallow", h)
            outs.append(layer("head", h))
        dy.forward(outs)
        return [torch.from_numpy(o.npvalue()).float()[None] for o in outs]

    return run


def dynet_rnn(dy: Any, cell: RNNCell) -> Callable[[list[Any]], list[Any]]:
    pc = dy.ParameterCollection()
    _KEEP.append(pc)
    wb = _dy_linear(pc, cell.linear)

    def run(seqs: list[torch.Tensor]) -> list[Any]:
        dy.renew_cg()
        outs = []
        for seq in seqs:
            h = dy.inputTensor(np.zeros(HIDDEN, dtype=np.float32))
            for t in range(seq.shape[0]):
                x = dy.inputTensor(seq[t].numpy())
                h = dy.tanh(_dy_affine(dy, wb, dy.concatenate([x, h])))
            outs.append(h)
        dy.forward(outs)
        return [torch.from_numpy(o.npvalue()).float()[None] for o in outs]

    return run


def _import_dynet() -> Any:
    try:
        import dynet_config

        dynet_config.set(autobatch=1)
        import dynet
    except ImportError as err:
        print(f"DyNet not measured: {err} (pip install -e .[bench])")
        return None
    return dynet


def _check(name: str, got: list[Any], want: list[Any]) -> None:
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g if isinstance(g, tuple) else (g,), w if isinstance(w, tuple) else (w,),
                        strict=True):  # fmt: skip
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"{name} differs")


def _case(case: str, shape: str, instances: list[Any], eager_fn: Callable[[Any], Any],
          impls: dict[str, Callable[[], Any]], repeat: int) -> Row:  # fmt: skip
    with torch.no_grad():
        want = [eager_fn(x) for x in instances]
        fns = {"eager": lambda: [eager_fn(x) for x in instances]}
    for name, fn in impls.items():
        stats = ab.Stats()
        got = fn(stats) if name.startswith("ember") else fn()
        _check(name, got, want)
        if name == "ember":
            print(f"  {case} {shape}: {stats}")
        fns[name] = (lambda f=fn: f(None)) if name.startswith("ember") else fn
    with torch.no_grad():
        return Row(case, shape, compare(fns, warmup=2, repeat=repeat, budget_s=20))


def _ember(fn: Callable[[Any], Any], instances: list[Any], **switches: bool) -> Any:
    return lambda stats: ab.run(fn, instances, stats=stats, **switches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="TreeLSTM only, no ablations")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--breakdown", action="store_true",
                        help="only split ember's TreeLSTM 64-tree time (DyNet and eager alongside) "
                        "and measure the floor")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    dy = _import_dynet()
    rows: list[Row] = []

    leaf, node = LeafCell(HIDDEN, VOCAB).eval(), NodeCell(HIDDEN).eval()
    encode = treelstm(ab.block(leaf), ab.block(node))
    if args.breakdown:
        rng = random.Random(0)
        trees = [random_tree(rng.randint(8, 32), rng, VOCAB) for _ in range(64)]
        dy_run = dynet_treelstm(dy, leaf, node) if dy else None
        _breakdown(encode, trees, dy_run, args.repeat)
        _floor(leaf, node, trees, args.repeat)
        return
    for n in (8, 64):
        rng = random.Random(0)
        trees = [random_tree(rng.randint(8, 32), rng, VOCAB) for _ in range(n)]
        impls: dict[str, Any] = {"ember": _ember(encode, trees)}
        if not args.quick:
            for switch in ("coarsen", "gather", "inline"):
                impls[f"ember-no-{switch}"] = _ember(encode, trees, **{switch: False})
        if dy is not None:
            dy_run = dynet_treelstm(dy, leaf, node)
            impls["dynet"] = lambda t=trees, r=dy_run: r(t)
        rows.append(_case("treelstm", f"{n} trees h{HIDDEN}", trees, encode, impls, args.repeat))
    if not args.quick:
        rows += _other_models(dy, args.repeat)
    print_table(rows, baseline="ember")
    write_jsonl(rows, "bench-results/autobatch.jsonl", env=environment())


def _breakdown(encode: Callable[[Any], Any], trees: list[Any],
               dy_run: Callable[[list[Any]], Any] | None, repeat: int) -> None:  # fmt: skip
    """Median split of ab.run into recording (Python), launch glue and kernels; each ember run
    is followed by a DyNet run and an eager run of the same trees (same load)."""
    ab.run(encode, trees)
    parts: dict[str, list[float]] = {"total": [], "record": [], "glue": [], "kernel": []}
    others: dict[str, list[float]] = {"dynet": [], "eager": []}
    for _ in range(repeat):
        stats = ab.Stats()
        start = time.perf_counter()
        ab.run(encode, trees, stats=stats)
        total = time.perf_counter() - start
        parts["total"].append(total)
        parts["record"].append(total - stats.launch_s)
        parts["glue"].append(stats.launch_s - stats.kernel_s)
        parts["kernel"].append(stats.kernel_s)
        if dy_run is not None:
            others["dynet"].append(_timed(lambda: dy_run(trees)))
        with torch.no_grad():
            others["eager"].append(_timed(lambda: [encode(t) for t in trees]))
    print(f"treelstm 64 trees h{HIDDEN}, medians of {repeat} (ms):")
    for name, values in parts.items():
        print(f"  ember {name:<7} {1e3 * statistics.median(values):8.1f}")
    for name, values in others.items():
        if values:
            ratio = statistics.median(values) / statistics.median(parts["total"])
            print(
                f"  {name:<13} {1e3 * statistics.median(values):8.1f}  (ember {ratio:.2f}x faster)"
            )


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _floor(leaf: LeafCell, node: NodeCell, trees: list[Any], repeat: int) -> None:
    """What any auto-batcher of `encode` on this machine pays at least: the instance's own Python
    (`encode` with blocks that return at once) plus PyTorch's kernels on the batched groups
    (one LeafCell call on every leaf, one NodeCell call per depth: perfect batching, no gathers,
    no bookkeeping)."""
    out = (torch.zeros(1, HIDDEN), torch.zeros(1, HIDDEN))
    plain = treelstm(lambda _token: out, lambda *_children: out)
    leaves: list[int] = []
    depths: list[int] = []  # of every node: ab.run's (NodeCell, depth) groups

    def depth(tree: Any) -> int:
        if isinstance(tree, int):
            leaves.append(tree)
            return 0
        d = 1 + max(depth(tree[0]), depth(tree[1]))
        depths.append(d)
        return d

    for t in trees:
        depth(t)
    tokens = torch.tensor(leaves)
    batches = [[torch.randn(depths.count(d), HIDDEN) for _ in range(4)]
               for d in sorted(set(depths))]  # fmt: skip

    def batched() -> None:
        leaf(tokens)
        for children in batches:
            node(*children)

    with torch.no_grad():
        python = statistics.median(_timed(lambda: [plain(t) for t in trees]) for _ in range(repeat))
        batched()
        kernels = statistics.median(_timed(batched) for _ in range(repeat))
    print(f"floor (ms): instance Python alone {1e3 * python:.1f} + PyTorch on the batched groups "
          f"({len(tokens)} leaves, {len(batches)} node depths) {1e3 * kernels:.1f} = "
          f"{1e3 * (python + kernels):.1f}")  # fmt: skip


def _other_models(dy: Any, repeat: int) -> list[Row]:
    rows = []
    layers: dict[str, nn.Module] = {
        "enc": Layer(HIDDEN, HIDDEN),
        "gate": nn.Linear(HIDDEN, 1),
        "deep1": Layer(HIDDEN, HIDDEN),
        "deep2": Layer(HIDDEN, HIDDEN),
        "shallow": Layer(HIDDEN, HIDDEN),
        "head": nn.Linear(HIDDEN, 16),
    }
    classify = branchy({k: m.eval() for k, m in layers.items()})
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(1, HIDDEN, generator=gen) for _ in range(64)]
    impls: dict[str, Any] = {
        "ember": _ember(classify, xs),
        "ember-no-ghosts": _ember(classify, xs, ghosts=False),
    }
    if dy is not None:
        dy_branchy = dynet_branchy(dy, layers)
        impls["dynet"] = lambda: dy_branchy(xs)
    rows.append(_case("if/else", f"64 x h{HIDDEN}", xs, classify, impls, repeat))

    cell = RNNCell(HIDDEN, HIDDEN).eval()
    run_sequence = rnn(cell)
    rng = random.Random(0)
    seqs = [torch.randn(rng.randint(5, 30), HIDDEN, generator=gen) for _ in range(64)]
    impls = {
        "ember": _ember(run_sequence, seqs),
        "ember-no-taint": _ember(run_sequence, seqs, taint=False),
        "ember-no-gather": _ember(run_sequence, seqs, gather=False),
    }
    if dy is not None:
        dy_rnn = dynet_rnn(dy, cell)
        impls["dynet"] = lambda: dy_rnn(seqs)
    rows.append(_case("rnn", f"64 seqs 5-30 h{HIDDEN}", seqs, run_sequence, impls, repeat))
    return rows


if __name__ == "__main__":
    main()
