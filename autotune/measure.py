"""Build and time MetaSchedule candidates: builders (in this process, or a persistent pool of
worker processes) and runners that time on this CPU (in this process or in a worker process) or on
a device behind a TVM RPC tracker.

MetaSchedule's stock `LocalBuilder` times out here: each of its fresh workers imports
`tvm.s_tir.tensor_intrin`, which takes ~40 s (../shared/TVM_NOTES.md), inside the timed build.
`PoolBuilder` keeps its workers (`worker_pool.py`) alive across batches and builds candidates in
parallel; `InProcessBuilder` builds one after another in this process. Both export a shared library
that every runner loads.

Measurement: one untimed warm-up call, then `repeat` samples of at least `min_repeat_ms` each. With
`cache_flush`, the CPU caches are flushed (all arguments but the output) before every timed call, so
each sample is one cold call (`min_repeat_ms` does not apply: a longer sample would time warm calls).

The timeout counts run time, never time spent waiting in a queue. `PoolRunner` measures in a worker
process whose clock starts when the worker takes the candidate (load, inputs, warm-up and samples
count) and kills a candidate over time, or one that crashes, without stopping the tuning. A remote
session is requested from the tracker before its clock starts (TVM's session timeout starts when the
server accepts it). In-process (`LocalRunner`), a kernel cannot be interrupted: one whose warm-up
call alone is slower than the timeout is reported as failed once that call returns.

Inputs are random floats; integer inputs are zeros, so gathers and `take` whose indices come from an
input never read out of bounds (random indices segfault the measuring process).
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ember.autotune.worker_pool import Outcome, WorkerPool
from ember.codegen.fast_math import fast_math
from ember.errors import TuningError

__all__ = [
    "InProcessBuilder",
    "LocalRunner",
    "MeasureConfig",
    "PoolBuilder",
    "PoolRunner",
    "Tracker",
    "TrackerRunner",
    "fill_arguments",
    "noise",
    "preload_tensor_intrinsics",
    "time_module",
    "warm_up_worker",
]

log = logging.getLogger(__name__)

# workers warm up before their first job, and never import torch (see worker_pool.py)
_WORKER_MODULES: dict[str, Any] = {"setup": f"{__name__}:warm_up_worker", "blocked": ("torch",)}


@dataclass(frozen=True)
class MeasureConfig:
    """How one candidate is timed. `timeout_sec` bounds its measurement's run time (not
    queueing): in a worker, all of it; in this process, the warm-up call."""

    repeat: int = 3
    min_repeat_ms: int = 20
    cache_flush: bool = False
    timeout_sec: float = 10.0


def preload_tensor_intrinsics() -> None:
    """Import `tvm.s_tir.tensor_intrin` (MetaSchedule's design spaces need it) in seconds.

    Its ~250 TVMScript functions each call `inspect.stack()`, which reads the source of every
    frame: with torch's thousands of modules loaded the import takes 40-70 s here. The parser only
    needs the frames themselves, so a frame walk stands in for `inspect.stack` during the import.
    """
    import inspect
    import sys

    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return

    def frames(context: int = 1) -> list[inspect.FrameInfo]:
        frame, found = sys._getframe(1), []
        while frame is not None:
            code = frame.f_code
            found.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name,
                                           None, None))  # fmt: skip
            frame = frame.f_back
        return found

    original, inspect.stack = inspect.stack, frames
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack = original


def warm_up_worker() -> None:
    """Build, export, load and run a tiny kernel: a worker's first build and load take seconds
    (lazy imports, LLVM start-up), which must not count against its first candidate's timeout."""
    from tvm import te

    a = te.placeholder((8,), "float32", name="a")
    b = te.compute((8,), lambda i: a[i] + 1.0, name="b")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    directory = tempfile.mkdtemp(prefix="ember-warm-up-")
    try:
        path = _build_one(mod, tvm.target.Target("llvm"), directory)
        device = tvm.cpu()
        module = tvm.runtime.load_module(path)
        args = fill_arguments([("TENSOR", "float32", [8]), ("TENSOR", "float32", [8])], device)
        time_module(module, device, args, MeasureConfig(repeat=1, min_repeat_ms=0))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def fill_arguments(args_info: Sequence[Any], device: Any, seed: int = 0) -> list[Any]:
    """Tensors for a kernel's arguments on `device`: random floats, zero integers (safe indices)."""
    rng = np.random.default_rng(seed)
    tensors = []
    for info in args_info:
        kind, dtype, shape = _arg_info(info)
        if kind != "TENSOR":
            raise TuningError(f"cannot make a measurement input for argument {info!r}")
        if dtype.startswith(("float", "bfloat")):
            array = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
            if dtype != "float32":
                tensor = tvm.runtime.empty(shape, dtype, device)
                tensor.copyfrom(array.astype(dtype if dtype != "bfloat16" else "float32"))
                tensors.append(tensor)
                continue
        else:
            array = np.zeros(shape, dtype="bool" if dtype == "bool" else dtype)
        tensors.append(tvm.runtime.tensor(array, device))
    return tensors


def _arg_info(info: Any) -> tuple[str, str, list[int]]:
    """(kind, dtype, shape) from MetaSchedule's ArgInfo JSON ["TENSOR", dtype, shape]."""
    if hasattr(info, "as_json"):
        info = info.as_json()
    kind, dtype, shape = info[0], str(info[1]), [int(d) for d in info[2]]
    return str(kind), dtype, shape


def time_module(
    module: Any, device: Any, args: Sequence[Any], config: MeasureConfig
) -> list[float]:
    """Seconds per call for each of `config.repeat` samples, after one warm-up call.

    Raises TuningError when the warm-up call alone exceeds `config.timeout_sec`.
    """
    function = module[module.entry_name]
    device.sync()
    start = time.perf_counter()
    function(*args)
    device.sync()
    warmup = time.perf_counter() - start
    if warmup > config.timeout_sec:
        raise TuningError(
            f"kernel ran {warmup:.1f} s, over the {config.timeout_sec:g} s measurement timeout"
        )
    evaluator = module.time_evaluator(
        module.entry_name,
        device,
        number=1,
        repeat=config.repeat,
        min_repeat_ms=0 if config.cache_flush else config.min_repeat_ms,
        f_preproc="cache_flush_cpu_non_first_arg" if config.cache_flush else "",
    )
    return [float(t) for t in evaluator(*args).results]


def noise(run_secs: Sequence[float]) -> float:
    """Relative spread of repeated timings: (max - min) / median (0 for fewer than 2 samples)."""
    if len(run_secs) < 2:
        return 0.0
    return (max(run_secs) - min(run_secs)) / statistics.median(run_secs)


def _build_one(mod: Any, target: Any, directory: str) -> str:
    """Compile one candidate and export it as a shared library; returns its path."""
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    if target.kind.name == "llvm":  # as codegen.build does after scheduling
        mod = fast_math(mod)
    library = tvm.tirx.build(mod, target=target)
    # a directory each: MetaSchedule's RemoveBuildArtifact deletes the artifact's directory;
    # unique paths: the dynamic loader caches libraries by path
    path = os.path.join(tempfile.mkdtemp(dir=directory), "kernel.so")
    library.export_library(path)
    return path


def _built(outcome: Outcome) -> Any:
    return ms.builder.BuilderResult(outcome.value, outcome.error)


@derived_object
class InProcessBuilder(ms.builder.PyBuilder):
    """Builds candidates in this process with `tvm.tirx.build` and exports each as a `.so`."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="ember-tune-")

    def build(self, build_inputs: list[Any]) -> list[Any]:
        results = []
        for build_input in build_inputs:
            try:
                path = _build_one(build_input.mod, build_input.target, self.directory)
                results.append(ms.builder.BuilderResult(path, None))
            except Exception as err:  # a candidate that fails to build is a result, not a crash
                results.append(ms.builder.BuilderResult(None, f"{type(err).__name__}: {err}"))
        return results

    def cleanup(self) -> None:
        """Delete the built libraries."""
        shutil.rmtree(self.directory, ignore_errors=True)


@derived_object
class PoolBuilder(ms.builder.PyBuilder):
    """Builds candidates in parallel in `workers` persistent processes (one per core by default);
    a build over `timeout_sec` (run time, not queueing) fails alone."""

    def __init__(self, workers: int | None = None, timeout_sec: float = 60.0) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="ember-tune-")
        count = workers or len(os.sched_getaffinity(0))
        self.pool = WorkerPool(count, timeout_sec=timeout_sec, **_WORKER_MODULES)

    def build(self, build_inputs: list[Any]) -> list[Any]:
        jobs = [(b.mod, b.target, self.directory) for b in build_inputs]
        return [_built(outcome) for outcome in self.pool.map(_build_one, jobs)]

    def cleanup(self) -> None:
        """Stop the workers and delete the built libraries."""
        self.pool.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@derived_object
class _Done(ms.runner.PyRunnerFuture):
    """A runner future whose result is already known (candidates run one at a time)."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        return self._result


def _measured(run: Any) -> Any:
    """A RunnerResult from calling `run()` -> seconds, or the error it raised."""
    try:
        return ms.runner.RunnerResult(run(), None)
    except Exception as err:  # the tuner records a failed candidate and moves on
        return ms.runner.RunnerResult(None, f"{type(err).__name__}: {err}")


@derived_object
class LocalRunner(ms.runner.PyRunner):
    """Times candidates in this process on this CPU, one at a time."""

    def __init__(self, config: MeasureConfig | None = None) -> None:
        super().__init__()
        self.config = config or MeasureConfig()

    def run(self, runner_inputs: list[Any]) -> list[Any]:
        return [_Done(_measured(lambda i=i: self._run_one(i))) for i in runner_inputs]

    def _run_one(self, runner_input: Any) -> list[float]:
        return _time_library(
            str(runner_input.artifact_path),
            str(runner_input.device_type),
            [_arg_info(a) for a in runner_input.args_info],
            self.config,
        )

    def cleanup(self) -> None:
        """Nothing to release (the same interface as PoolRunner)."""


def _time_library(
    path: str, device_type: str, args_info: list[Any], config: MeasureConfig
) -> list[float]:
    """Load a built candidate and time it on device 0 of `device_type`."""
    device = tvm.runtime.device(_device_type(device_type), 0)
    module = tvm.runtime.load_module(path)
    args = fill_arguments(args_info, device)
    return time_module(module, device, args, config)


@derived_object
class PoolRunner(ms.runner.PyRunner):
    """Times candidates on this CPU in one persistent worker process, one at a time.

    The worker's clock starts when it takes a candidate; one over `config.timeout_sec`, or one
    that crashes the process, is a failed candidate and a fresh worker takes over.
    """

    def __init__(self, config: MeasureConfig | None = None) -> None:
        super().__init__()
        self.config = config or MeasureConfig()
        self.pool = WorkerPool(1, timeout_sec=self.config.timeout_sec, **_WORKER_MODULES)

    def run(self, runner_inputs: list[Any]) -> list[Any]:
        self.pool.timeout_sec = self.config.timeout_sec
        jobs = [
            (
                str(i.artifact_path),
                str(i.device_type),
                [_arg_info(a) for a in i.args_info],
                self.config,
            )
            for i in runner_inputs
        ]
        return [_Done(_runner_result(o)) for o in self.pool.map(_time_library, jobs)]

    def cleanup(self) -> None:
        """Stop the worker."""
        self.pool.close()


def _runner_result(outcome: Outcome) -> Any:
    if outcome.error is not None:
        return ms.runner.RunnerResult(None, outcome.error)
    return ms.runner.RunnerResult(outcome.value, None)


def _device_type(name: Any) -> str:
    """The runtime device of a target kind (MetaSchedule passes the kind's name)."""
    return {"llvm": "cpu"}.get(str(name), str(name))


@dataclass(frozen=True)
class Tracker:
    """A TVM RPC tracker address and the device key to request from it."""

    host: str
    port: int
    key: str

    @classmethod
    def parse(cls, address: str, key: str) -> Tracker:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise TuningError(f"--rpc-tracker: expected HOST:PORT, got {address!r}")
        return cls(host, int(port), key)

    def session(self, timeout_sec: float) -> Any:
        """A session on a free device; its timeout starts once the tracker hands one out."""
        from tvm import rpc

        try:
            tracker = rpc.connect_tracker(self.host, self.port)
            return tracker.request(self.key, priority=1, session_timeout=max(1, int(timeout_sec)))
        except Exception as err:
            raise TuningError(
                f"cannot get a {self.key!r} device from the RPC tracker at "
                f"{self.host}:{self.port}: {err}; check it with "
                f"`python -m tvm.exec.query_rpc_tracker --host {self.host} --port {self.port}`"
            ) from err


@derived_object
class TrackerRunner(ms.runner.PyRunner):
    """Times candidates on a remote device: one tracker session per candidate, so a candidate
    that hangs is killed by its own session timeout and never delays the others."""

    def __init__(self, tracker: Tracker, config: MeasureConfig | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.config = config or MeasureConfig()

    def run(self, runner_inputs: list[Any]) -> list[Any]:
        return [_Done(_measured(lambda i=i: self._run_one(i))) for i in runner_inputs]

    def cleanup(self) -> None:
        """Nothing to release: each candidate's session ends with it."""

    def _run_one(self, runner_input: Any) -> list[float]:
        # upload, load, fill and warm-up also run inside the session: allow them a margin
        session = self.tracker.session(self.config.timeout_sec + 10)
        path = str(runner_input.artifact_path)
        name = os.path.basename(path)
        try:
            session.upload(path)
            module = session.load_module(name)
            device = session.device(_device_type(runner_input.device_type), 0)
            args = fill_arguments(runner_input.args_info, device)
            return time_module(module, device, args, self.config)
        finally:
            try:
                session.get_function("tvm.rpc.server.remove")(name)
            except Exception:  # the session may be gone after a timeout; the server cleans up
                log.debug("could not remove %s on the RPC server", name)
