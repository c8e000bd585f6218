"""How many chunks to pipeline: a cost model from profiled times and a DP over split points.

Per chunk of t tokens, computation takes `compute(t) = compute_fixed + compute_per_token * t`
and its collectives `comm(t) = collectives * latency + bytes_per_token * t / bandwidth`. The
communication sits in the middle of a chunk's computation (route, dispatch, experts, combine,
the rest), and the wavefront schedule of `pipeline-all-to-all` runs chunk i's communication
while the second half of chunk i-1 and the first half of chunk i+1 compute, so sizes
s_1..s_n (c_0 = c_{n+1} = 0) take

    T = c_1 / 2 + sum_i max(comm(s_i), c_{i-1} / 2 + c_{i+1} / 2) + c_n / 2

a sum over neighbouring triples: the best split points on a grid of `granularity` tokens follow
from dynamic programming over (tokens covered, last two chunk sizes). One chunk gives
compute + comm, the unoverlapped time. `CostModel.profile` fits the model to one run of the
unchunked program (its all-to-all times from the runtime's timestamps) and a latency probe.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["CostModel", "choose_chunks"]


@dataclass(frozen=True)
class CostModel:
    """Linear per-chunk compute and communication times, in seconds."""

    compute_per_token: float
    bytes_per_token: float
    bandwidth: float  # bytes per second
    latency: float  # seconds per collective
    collectives: int = 3  # per chunk and MoE layer: counts, dispatch, combine
    compute_fixed: float = 0.0

    def compute(self, tokens: int) -> float:
        return self.compute_fixed + self.compute_per_token * tokens

    def comm(self, tokens: int) -> float:
        return self.collectives * self.latency + self.bytes_per_token * tokens / self.bandwidth

    def predict(self, sizes: tuple[int, ...]) -> float:
        """Predicted time of the pipelined chunks `sizes` (one chunk: no overlap)."""
        half = [0.0, *(self.compute(t) / 2 for t in sizes), 0.0]
        windows = sum(max(self.comm(t), half[i] + half[i + 2]) for i, t in enumerate(sizes))
        return half[1] + windows + half[-2]

    def on_cluster(self, *, bandwidth: float, latency: float,
                   compute_speedup: float = 1.0) -> CostModel:  # fmt: skip
        """A simulated cluster: another network, computation `compute_speedup` times faster
        (an accelerator instead of this CPU)."""
        return dataclasses.replace(
            self,
            bandwidth=bandwidth,
            latency=latency,
            compute_per_token=self.compute_per_token / compute_speedup,
            compute_fixed=self.compute_fixed / compute_speedup,
        )

    @classmethod
    def profile(cls, *, tokens: int, total: float, comm: float, nbytes: float, latency: float,
                collectives: int = 3) -> CostModel:  # fmt: skip
        """Fit to one unchunked run: `total` seconds, `comm` of them in `collectives` collectives
        moving `nbytes`; `latency` from a small-message probe. Each chunk also costs the
        computing thread its collectives' latency (issuing and completing them on the host)."""
        wire = max(comm - collectives * latency, 1e-9)
        compute_fixed = collectives * latency
        return cls(
            compute_per_token=max(total - comm - compute_fixed, 0.0) / tokens,
            bytes_per_token=nbytes / tokens,
            bandwidth=nbytes / wire,
            latency=latency,
            collectives=collectives,
            compute_fixed=compute_fixed,
        )


_State = tuple[int, int, int]  # (cells covered, cells of the chunk before the last, of the last)


@dataclass(frozen=True)
class _Grid:
    model: CostModel
    tokens: int
    unit: int

    def size(self, a: int, b: int) -> int:  # tokens in cells [a, b)
        return max(0, min(b * self.unit, self.tokens) - a * self.unit)

    def half(self, a: int, b: int) -> float:  # half the computation of cells [a, b); empty: 0
        return self.model.compute(self.size(a, b)) / 2 if b > a else 0.0

    def window(self, state: _State, nxt: int) -> float:
        """The last chunk's communication against its neighbours' computation."""
        end, before, last = state
        neighbours = self.half(end - last - before, end - last) + self.half(end, end + nxt)
        return max(self.model.comm(self.size(end - last, end)), neighbours)


def choose_chunks(
    model: CostModel, tokens: int, *, granularity: int | None = None
) -> tuple[int, ...]:
    """The chunk sizes (summing to `tokens`) with the least predicted time; split points lie
    on multiples of `granularity` tokens (default: tokens / 16, at least 1)."""
    grid = _Grid(model, tokens, granularity or max(1, tokens // 16))
    cells = math.ceil(tokens / grid.unit)
    # best[state]: the cost of every window but the last chunk's, and the state before
    best: dict[_State, tuple[float, _State | None]] = {
        (end, 0, end): (grid.half(0, end), None) for end in range(1, cells + 1)
    }
    for end in range(1, cells):
        for state in [s for s in best if s[0] == end]:
            for nxt in range(1, cells - end + 1):
                cost = best[state][0] + grid.window(state, nxt)
                key = (end + nxt, state[2], nxt)
                if key not in best or cost < best[key][0]:
                    best[key] = (cost, state)
    finals = [
        (cost + grid.window(state, 0) + grid.half(cells - state[2], cells), state)
        for state, (cost, _) in best.items()
        if state[0] == cells
    ]
    sizes: list[int] = []
    current: _State | None = min(finals)[1]
    while current is not None:
        sizes.append(grid.size(current[0] - current[2], current[0]))
        current = best[current][1]
    return tuple(reversed(sizes))
