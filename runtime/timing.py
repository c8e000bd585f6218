"""Latency statistics of repeated calls: `repeat` samples, each the mean of `number` calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Latency", "measure_latency"]


@dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds over `repeat` samples of `number` calls each."""

    mean_ms: float
    median_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    repeat: int
    number: int


def measure_latency(fn: Callable[[], Any], *, repeat: int, number: int, warmup: int = 1) -> Latency:
    """Call `fn` `warmup` times untimed, then time `repeat` samples of `number` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e3)
    ms = np.asarray(samples)
    return Latency(
        float(ms.mean()),
        float(np.median(ms)),
        float(ms.min()),
        float(ms.max()),
        float(ms.std()),
        repeat,
        number,
    )
