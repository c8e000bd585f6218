"""TVM's thread pool gets every physical core (TVM alone would take half the logical CPUs on x86)
unless the user sized it; checked in fresh processes, where the pool has not started yet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ember.runtime.threads import physical_cores

# Runs a parallel matmul for ~0.5 s and prints TVM_NUM_THREADS and how many of the process's
# threads used at least a tenth of the busiest one's CPU time.
_PROBE = """
import glob, os, time
import numpy as np, torch, ember

def cpu_times():
    return {t: int(open(t + "/stat").read().split()[13]) for t in glob.glob("/proc/self/task/*")}

model = torch.nn.Linear(512, 512).eval()
x = torch.randn(512, 512)
compiled = ember.compile(model, (x,))
np.testing.assert_allclose(compiled(x), model(x).detach().numpy(), rtol=1e-4, atol=1e-4)
before = cpu_times()
end = time.perf_counter() + 0.5
while time.perf_counter() < end:
    compiled(x)
used = [t - before.get(k, 0) for k, t in cpu_times().items()]
print(os.environ.get("TVM_NUM_THREADS"), sum(u >= max(used) / 10 for u in used))
"""


def _probe(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return out[-2], int(out[-1])


def test_physical_cores_counts_cores_not_threads() -> None:
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread CPU times need /proc")
def test_kernels_run_on_every_physical_core() -> None:
    threads, busy = _probe()
    assert threads == str(physical_cores())
    assert busy >= min(physical_cores(), 2)  # TVM's own default ran this on one thread here


def test_user_setting_wins() -> None:
    threads, busy = _probe(OMP_NUM_THREADS="1")
    assert threads == "None"  # not set by ember: TVM reads OMP_NUM_THREADS
    assert busy == 1
