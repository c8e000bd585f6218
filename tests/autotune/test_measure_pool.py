"""The persistent worker pool and the builder/runner on it, with real processes and real kernels:
a job's timeout counts its run time, never the time it waited in the queue; a job over time or one
that crashes its worker fails alone and the pool goes on; builds in workers load and compute right."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from ember.autotune.worker_pool import WorkerPool
from ember.errors import TuningError


def test_queued_jobs_never_time_out_but_running_ones_do():
    timeout = 1.0
    with WorkerPool(1, timeout_sec=timeout) as pool:
        start = time.monotonic()
        # six 0.4 s jobs queue behind each other on one worker: the last finishes ~2.4 s after
        # map() starts, far past the timeout, and must still succeed
        outcomes = pool.map(time.sleep, [(0.4,)] * 6 + [(30.0,), (0.1,)])
        elapsed = time.monotonic() - start
    assert [o.error for o in outcomes[:6]] == [None] * 6
    assert all(o.seconds < timeout for o in outcomes[:6])
    assert sum(o.seconds for o in outcomes[:6]) > 2 * timeout
    assert outcomes[6].error == "timed out: ran over 1 s"
    assert timeout <= outcomes[6].seconds < 10  # killed, not waited for
    assert outcomes[7].error is None  # a fresh worker took over
    assert elapsed < 20


def test_a_crashing_job_fails_alone():
    with WorkerPool(2, timeout_sec=30) as pool:
        outcomes = pool.map(os.abort, [()])
        assert "worker process died" in outcomes[0].error
        assert [o.value for o in pool.map(abs, [(-3,), (4,)])] == [3, 4]


def test_job_exceptions_are_outcomes():
    with WorkerPool(1, timeout_sec=30) as pool:
        (outcome,) = pool.map(int, [("seven",)])
    assert outcome.error.startswith("ValueError: invalid literal for int()")


def test_bad_worker_count():
    with pytest.raises(TuningError, match="at least 1 worker, got 0"):
        WorkerPool(0, timeout_sec=1)


def _kernel(n: int) -> object:
    """b[i] = sum_k a[k] * a[(i + k) % n], naive and single-threaded: n*n multiply-adds."""
    import tvm
    from tvm import te

    a = te.placeholder((n,), "float32", name="a")
    k = te.reduce_axis((0, n), name="k")
    b = te.compute((n,), lambda i: te.sum(a[k] * a[(i + k) % n], axis=k), name="b")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def test_pool_builder_builds_kernels_that_compute_right(tmp_path):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.measure import PoolBuilder

    tgt = tvm.target.Target("llvm")
    builder = PoolBuilder(2)
    try:
        results = builder.build([ms.builder.BuilderInput(_kernel(n), tgt) for n in (16, 32, 48)])
        assert [r.error_msg for r in results] == [None] * 3
        for n, result in zip((16, 32, 48), results, strict=True):
            module = tvm.runtime.load_module(result.artifact_path)
            a = np.random.default_rng(n).standard_normal(n).astype(np.float32)
            b = tvm.runtime.empty((n,), "float32")
            module["main"](tvm.runtime.tensor(a), b)
            expected = [np.dot(a, np.roll(a, -i)) for i in range(n)]
            np.testing.assert_allclose(b.numpy(), expected, rtol=1e-4, atol=1e-4)
    finally:
        builder.cleanup()


def test_pool_runner_timeout_counts_run_time_not_queueing():
    """Candidates that each run well within the timeout, queued so that together they take far
    longer, all succeed; a candidate that runs longer than the timeout is killed."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.measure import InProcessBuilder, MeasureConfig, PoolRunner

    tgt = tvm.target.Target("llvm")
    builder = InProcessBuilder()
    quick, slow = builder.build([ms.builder.BuilderInput(_kernel(n), tgt) for n in (8000, 60000)])

    def inputs(result: object, n: int, count: int) -> list[object]:
        args = ms.arg_info.ArgInfo.from_prim_func(_kernel(n)["main"])
        return [ms.runner.RunnerInput(result.artifact_path, "llvm", args)] * count

    runner = PoolRunner(MeasureConfig(repeat=1, min_repeat_ms=0, timeout_sec=60))
    try:
        (calibration,) = [f.result() for f in runner.run(inputs(quick, 8000, 1))]
        assert calibration.error_msg is None
        start = time.monotonic()
        runner.run(inputs(quick, 8000, 1))[0].result()
        one = time.monotonic() - start  # one candidate's whole measurement, worker warm
        runner.config = MeasureConfig(repeat=1, min_repeat_ms=0, timeout_sec=4 * one + 0.2)
        start = time.monotonic()
        queued = [f.result() for f in runner.run(inputs(quick, 8000, 10))]
        waited = time.monotonic() - start
        assert waited > runner.config.timeout_sec  # the last ones waited longer than the timeout
        assert [r.error_msg for r in queued] == [None] * 10
        # 56x the work of the quick kernel: far over the timeout; the next candidate still runs
        results = [f.result() for f in runner.run(inputs(slow, 60000, 1) + inputs(quick, 8000, 1))]
        assert "timed out" in results[0].error_msg
        assert results[1].error_msg is None
    finally:
        runner.cleanup()
        builder.cleanup()
