"""Expert parallelism with and without all-to-all overlap, against the single-process model.

A Mixtral-like stack (per layer: RMSNorm, projection, residual, RMSNorm, transformers'
MixtralSparseMoeBlock, residual; hidden 1024, 8 experts, top-2) on 2048 tokens in total, split
evenly over the ranks of a gloo group on loopback. Each world size compiles every rank's
program twice: unchunked (no overlap) and with the chunks the cost model picks (ember's
overlap). Times are the slowest rank's, median of repeats. The fraction of all-to-all time
hidden comes from the runtime's timestamps: 1 - (time the overlapped program sat blocked on
collectives) / (time the collectives took in the unoverlapped program). max_err compares every
rank's output with the single-process ember build of the same model on all tokens.

    python benchmarks/moe.py --world-size 4     # 2 and 4 ranks; ends with the summary line
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HIDDEN, EXPERTS, TOP_K, TOKENS, LAYERS = 1024, 8, 2, 2048, 2
# simulated: 200 Gb/s links, 10 us per call, experts 100x faster than this CPU (accelerators)
CLUSTER = {"bandwidth": 25e9, "latency": 10e-6, "compute_speedup": 100.0}


def _model(ffn: int) -> Any:
    import torch
    import transformers
    from transformers.models.mixtral import modeling_mixtral as mixtral

    config = transformers.MixtralConfig(
        hidden_size=HIDDEN, intermediate_size=ffn, num_local_experts=EXPERTS,
        num_experts_per_tok=TOP_K, num_attention_heads=8, num_key_value_heads=8,
    )  # fmt: skip
    config._experts_implementation = "grouped_mm"

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = mixtral.MixtralRMSNorm(HIDDEN)
            self.proj = torch.nn.Linear(HIDDEN, HIDDEN, bias=False)
            self.norm2 = mixtral.MixtralRMSNorm(HIDDEN)
            self.moe = mixtral.MixtralSparseMoeBlock(config)

        def forward(self, x: Any) -> Any:
            x = x + self.proj(self.norm1(x))
            return x + self.moe(self.norm2(x))

    torch.manual_seed(0)
    model = torch.nn.Sequential(*(Layer() for _ in range(LAYERS))).eval()
    with torch.no_grad():  # bare modules skip transformers' weight init: experts are empty
        for p in model.parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if p.dim() == 1 else 0.03 * torch.randn_like(p))
    return model


def _tokens(rank: int, count: int) -> Any:
    import torch

    return torch.randn(1, count, HIDDEN, generator=torch.Generator().manual_seed(100 + rank))


def _run(program: Any, x: Any) -> tuple[float, float, float, Any]:
    """Slowest rank's time, time blocked on and spent in collectives, output."""
    import torch
    import torch.distributed as dist

    from ember.distributed import collectives

    dist.barrier()
    collectives.TRACE.clear()
    start = time.perf_counter()
    out = program(x)
    elapsed = torch.tensor([time.perf_counter() - start])
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    blocked = sum(r.exposed for r in collectives.TRACE)
    comm = sum(r.wait_end - r.start for r in collectives.TRACE)
    return float(elapsed), blocked, comm, out


def _alternating(programs: list[Any], x: Any, repeats: int) -> list[tuple[float, ...]]:
    """Median (time, blocked, comm) per program, runs interleaved so load drift hits all."""
    for program in programs:
        program(x)  # warm up
    runs: list[list[tuple[float, float, float]]] = [[] for _ in programs]
    for _ in range(repeats):
        for program, into in zip(programs, runs, strict=True):
            into.append(_run(program, x)[:3])
    return [tuple(statistics.median(r[i] for r in into) for i in range(3)) for into in runs]


def _latency() -> float:
    import torch
    import torch.distributed as dist

    x, y = torch.zeros(dist.get_world_size() * 8), torch.empty(dist.get_world_size() * 8)
    for _ in range(3):
        dist.all_to_all_single(y, x)
    start = time.perf_counter()
    for _ in range(20):
        dist.all_to_all_single(y, x)
    return (time.perf_counter() - start) / 20


def _rank(ffn: int, repeats: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from ember.distributed import CostModel, choose_chunks, collectives, compile_moe

    world, rank = dist.get_world_size(), dist.get_rank()
    model, tokens = _model(ffn), TOKENS // world
    x = _tokens(rank, tokens)
    plain = compile_moe(model, x, chunks=1)
    ((t_plain, _, comm_plain),) = _alternating([plain], x, 3)  # profile the unchunked program
    moved = sum(r.nbytes for r in collectives.TRACE)
    calls = len(collectives.TRACE)
    # one model for all ranks (the slowest rank's numbers): every rank must pick the same chunks
    shared = torch.tensor([t_plain, comm_plain, float(moved), _latency()], dtype=torch.float64)
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    total, comm, nbytes, latency = shared.tolist()
    cost = CostModel.profile(tokens=tokens, total=total, comm=comm, nbytes=nbytes,
                             latency=latency, collectives=calls)  # fmt: skip
    sizes = choose_chunks(cost, tokens)
    overlap = compile_moe(model, x, chunks=sizes)
    (t_plain, blocked_plain, comm_plain), (t_overlap, blocked_overlap, _) = _alternating(
        [plain, overlap], x, repeats
    )
    cluster = cost.on_cluster(**CLUSTER)
    cluster_sizes = choose_chunks(cluster, tokens)
    return {
        "rank": rank, "plain": t_plain, "overlap": t_overlap, "sizes": sizes,
        "comm_plain": comm_plain, "blocked_plain": blocked_plain,
        "blocked_overlap": blocked_overlap, "out": overlap(x).numpy(), "cost": cost,
        "predicted": (cost.predict((tokens,)), cost.predict(sizes)),
        "cluster": (cluster_sizes, cluster.predict((tokens,)), cluster.predict(cluster_sizes)),
    }  # fmt: skip


def _single(model: Any, world: int, repeats: int) -> tuple[float, list[Any]]:
    import numpy as np
    import torch

    import ember

    x = torch.cat([_tokens(r, TOKENS // world) for r in range(world)], dim=1)
    compiled = ember.compile(model, example_inputs=(x,))
    compiled(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = compiled(x)
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        eager = model(x)
    err = float(np.abs(out.numpy() - eager.numpy()).max())
    print(f"  single process (ember, all {TOKENS} tokens): {statistics.median(times) * 1e3:.1f} ms"
          f", max |ember - eager| {err:.2e}")  # fmt: skip
    return statistics.median(times), np.split(out.numpy(), world, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=4, help="largest world size (2, 4)")
    parser.add_argument("--ffn", type=int, default=256, help="expert intermediate size")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import numpy as np

    from ember.distributed import launch

    print(f"moe: {LAYERS} layers, hidden {HIDDEN}, ffn {args.ffn}, {EXPERTS} experts, top-{TOP_K}"
          f", {TOKENS} tokens, {os.cpu_count()} cores (shared with other jobs: noisy)")  # fmt: skip
    summary = ""
    for world in [w for w in (2, 4) if w <= args.world_size]:
        print(f"world size {world} ({TOKENS // world} tokens per rank, gloo on loopback):")
        t_single, expected = _single(_model(args.ffn), world, args.repeats)
        ranks = launch(_rank, world, args.ffn, args.repeats, timeout=300.0, deadline=3000.0)
        r0 = ranks[0]
        err = max(float(np.abs(r["out"] - expected[r["rank"]]).max()) for r in ranks)
        hidden = 1 - statistics.mean(r["blocked_overlap"] for r in ranks) / statistics.mean(
            r["comm_plain"] for r in ranks
        )
        speedup = r0["plain"] / r0["overlap"]
        print(f"  no overlap {r0['plain'] * 1e3:.1f} ms (collectives {r0['comm_plain'] * 1e3:.1f}"
              f" ms), ember overlap {r0['overlap'] * 1e3:.1f} ms with chunks {r0['sizes']}, "
              f"single process {t_single * 1e3:.1f} ms")  # fmt: skip
        print(
            f"  blocked on collectives: {r0['blocked_plain'] * 1e3:.1f} ms -> "
            f"{r0['blocked_overlap'] * 1e3:.1f} ms (rank 0); hidden fraction {hidden:.2f}"
        )
        plain, chosen = r0["predicted"]
        print(f"  cost model here ({r0['cost'].bandwidth / 1e9:.2f} GB/s, "
              f"{r0['cost'].latency * 1e6:.0f} us): no overlap {plain * 1e3:.1f} ms, "
              f"chosen {chosen * 1e3:.1f} ms")  # fmt: skip
        sizes, plain, chosen = r0["cluster"]
        print(f"  cost model, simulated cluster ({CLUSTER['bandwidth'] / 1e9:.0f} GB/s, "
              f"{CLUSTER['latency'] * 1e6:.0f} us, compute x{CLUSTER['compute_speedup']:.0f})"
              f": chunks {sizes}, no overlap "
              f"{plain * 1e3:.1f} ms, chosen {chosen * 1e3:.1f} ms")  # fmt: skip
        print(f"  speedup over no overlap {speedup:.2f}x, over single process "
              f"{t_single / r0['overlap']:.2f}x, max_err {err:.2e}")  # fmt: skip
        summary = f"moe: hidden_fraction={hidden:.2f} speedup={speedup:.2f} max_err={err:.2e}"
    print(summary)


if __name__ == "__main__":
    main()
