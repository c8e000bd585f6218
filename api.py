"""`ember.compile`: import → passes → codegen → runtime, as a function or a decorator.

Glue only: each step is one call into frontend/, passes/, codegen/ and runtime/.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np

from ember import config
from ember.errors import EmberError, InputError
from ember.ir import DType, Graph
from ember.ir.signature import Signature
from ember.runtime.executor import writable

__all__ = ["CompiledModel", "Program", "compile", "compile_graph"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Program:
    """One compiled graph: the optimized IR, the executable and the compile times."""

    graph: Graph
    executor: Any
    target: dict[str, Any]
    times: dict[str, float] = field(default_factory=dict)
    cache_key: str | None = None  # None: built with the on-disk cache off
    cache_hit: bool = False  # loaded from the cache: `times` has no build steps
    cache_entry: Path | None = None  # the cache directory holding this build
    destinations: bool = False  # takes a tensor per output after the inputs and writes into it

    @cached_property
    def signature(self) -> Signature:
        g = self.graph
        names, types = list(g.input_names), [v.type for v in g.inputs]
        if self.destinations:
            names += [f"destination{i}" for i in range(len(g.outputs))]
            types += [v.type for v in g.outputs]
        return Signature(names, types, g.symbol_ranges)

    def check(self, arrays: Sequence[Any]) -> None:
        """Raise InputError unless the arrays fit the graph's signature."""
        self.signature.bind([tuple(a.shape) for a in arrays], [_dtype_of(a) for a in arrays])

    def run(self, arrays: Sequence[Any]) -> list[Any]:
        """Check the inputs against the graph's signature, then run; returns TVM tensors."""
        self.check(arrays)
        if self.destinations:  # written in place: a copy would silently lose the results
            n = len(self.graph.inputs)
            arrays = [
                *arrays[:n],
                *(writable(a, f"destination{i}") for i, a in enumerate(arrays[n:])),
            ]
        return self.executor.run(arrays)

    def export(self, path: str | os.PathLike[str]) -> str:
        """Write this program as one `.so` (weights and metadata inside); load it with
        `ember.runtime.load` or the C++ `ember_run`. Returns the absolute path."""
        from ember.codegen.export import export_library, graph_metadata

        if self.cache_hit and self.cache_entry is not None:  # a loaded .so cannot be relinked
            from ember.codegen.cache import copy_library

            return str(copy_library(self.cache_entry, path))
        metadata = graph_metadata(self.graph, self.target, destinations=self.destinations)
        return str(export_library(self.executor.executable, metadata, path))


def _dtype_of(array: Any) -> DType:
    return _dtype_named(array.dtype)


@cache
def _dtype_named(dtype: Any) -> DType:
    return (
        DType.of(dtype)
        if isinstance(dtype, np.dtype)
        else DType.of(str(dtype).removeprefix("torch."))
    )


def compile_graph(
    g: Graph,
    target: str | dict[str, Any] = "llvm",
    passes: Sequence[str] | None = None,
    *,
    cache: bool | None = None,
    tuning_records: Any = None,
    zero_shot: str = "off",
    quantize: Any = None,
    destinations: bool = False,
) -> Program:
    """Optimize and build an ember graph; `cache` (default: EMBER_CACHE) reuses on-disk builds.

    `tuning_records` (a database path or URL, or a database from `ember.autotune`) gives kernels
    their best tuned schedules; builds with records skip the on-disk cache, whose key omits them.
    `zero_shot` ("off", "fallback" or "all", see `ember.autotune.zero_shot`) picks the schedules
    of kernels without records by ember's cost model; such builds skip the cache too.
    `quantize` (an `ember.QuantConfig`) calibrates and quantizes the optimized graph's matmuls.
    `destinations`: the program takes one tensor per output after the inputs and writes the
    output into it (codegen/destinations.py; ember.autobatch passes rows of its arenas).
    """
    from ember.codegen.build import build
    from ember.codegen.cache import CachedBuild, cached_build
    from ember.passes import DEFAULT_PIPELINE, run_pipeline
    from ember.runtime import Executor

    optimized, pass_times = run_pipeline(g, passes, dump_dir=config.dump_ir_dir())
    if quantize is not None:
        from ember.quantize import quantize_graph

        optimized = quantize_graph(optimized, quantize)
    use_cache = config.cache_enabled() if cache is None else cache
    names = DEFAULT_PIPELINE if passes is None else passes
    if tuning_records is not None or zero_shot != "off":
        database = None
        if tuning_records is not None:
            from ember.autotune.records import schedule_database

            database = schedule_database(tuning_records, target)
        selector = None
        if zero_shot != "off":
            from ember.autotune.zero_shot import zero_shot_schedules

            selector = partial(zero_shot_schedules, kernels=zero_shot)
        built = build(
            optimized, target, database=database, zero_shot=selector, destinations=destinations
        )
        cached = CachedBuild(built)
    else:
        cache_dir = config.cache_dir() if use_cache else None
        cached = cached_build(optimized, target, names, cache_dir, destinations=destinations)
    result = cached.build
    times = {**pass_times, **result.times}
    executor = Executor(result.executable, target=result.target)
    return Program(
        optimized,
        executor,
        result.target,
        times,
        cached.key,
        cached.hit,
        cached.path,
        destinations,
    )


class CompiledModel:
    """A compiled model: call it like the original.

    torch models take and return torch tensors (numpy in → numpy out), outputs in the eager
    structure; ONNX models return a list of numpy arrays in graph-output order. Without example
    inputs the model compiles on first call, once per input signature; a call whose shapes differ
    from every compiled signature recompiles with the differing dims symbolic, so later sizes reuse
    it. With example inputs the compiled signature is fixed and other calls raise InputError.
    """

    def __init__(self, model: Any, example_inputs: Sequence[Any] | None, *, target: Any,
                 dynamic: Any, passes: Sequence[str] | None,
                 cache: bool | None = None, tuning_records: Any = None,
                 zero_shot: str = "off", quantize: Any = None) -> None:  # fmt: skip
        self.model = model
        self.quantize = quantize
        self.tuning_records = tuning_records
        self.zero_shot = zero_shot
        self.target = target
        self.dynamic = dynamic
        self.passes = passes
        self.cache = cache
        self.compile_count = 0
        self._programs: list[tuple[Program, Any]] = []
        self._lock = threading.Lock()
        self._is_onnx = _is_onnx(model)
        self._lazy = example_inputs is None and not self._is_onnx
        self._specialized: dict[tuple[Any, ...], Program] | None = None
        self._bound_names: tuple[str, ...] | None = None
        if self._is_onnx:
            from ember.frontend.onnx import ConstantInputError, from_onnx, load_model

            self.model = load_model(model)
            try:
                self._add(from_onnx(self.model), None)
            except ConstantInputError as err:  # a shape operand is an input: specialize per call
                log.info("%s; compiling on each call for its values", err)
                self._specialized = {}
        elif example_inputs is not None:
            self._compile_torch(tuple(example_inputs), dynamic)

    @property
    def programs(self) -> list[Program]:
        return [p for p, _ in self._programs]

    def export(self, path: str | os.PathLike[str]) -> str:
        """Write the most recently compiled program as one `.so` (see `Program.export`).

        Outputs come back flat, in graph order; a model compiled lazily must be called once first.
        """
        if not self._programs:
            raise EmberError(
                f"{type(self.model).__name__} has not been compiled yet: call it once, or pass "
                f"example_inputs to ember.compile, before export()"
            )
        return self._programs[-1][0].export(path)

    def _add(self, g: Graph, out_spec: Any) -> tuple[Program, Any]:
        entry = (compile_graph(g, self.target, self.passes, cache=self.cache,
                               tuning_records=self.tuning_records, zero_shot=self.zero_shot,
                               quantize=self.quantize), out_spec)  # fmt: skip
        self._programs.append(entry)
        self.compile_count += 1
        return entry

    def _compile_torch(self, args: tuple[Any, ...], dynamic: Any) -> tuple[Program, Any]:
        from ember.frontend.torch import import_module

        imported = import_module(self.model, args, dynamic=dynamic)
        return self._add(imported.graph, imported.out_spec)

    def __call__(self, *args: Any) -> Any:
        if self._is_onnx:
            program, arrays = self._onnx_program(args)
            return [t.numpy() for t in program.run(arrays)]
        flat = _flatten(args)
        entry = self._select(flat)
        if entry is None and not self._lazy:
            entry = self._programs[
                0
            ]  # compiled for example inputs: its run() explains the mismatch
        program, out_spec = entry or self._compile_on_call(args, flat)
        outputs = program.run(flat)
        return _restore(outputs, out_spec, as_torch=_is_torch(flat))

    def _onnx_program(self, args: tuple[Any, ...]) -> tuple[Program, list[Any]]:
        """The program for this call and its array inputs.

        Inputs that the model uses as shapes (Reshape's shape, TopK's K, ...) are compiled in as
        constants: each distinct set of their values gets its own build, as a guard.
        """
        if self._specialized is None:
            return self._programs[0][0], list(args)
        from ember.frontend.onnx import import_specialized, input_names

        names = input_names(self.model)
        if len(args) != len(names):
            raise InputError(f"expected {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        values = {n: np.asarray(a) for n, a in zip(names, args, strict=True)}
        bound = self._bound_names or ()
        key = tuple((values[n].dtype.str, values[n].shape, values[n].tobytes()) for n in bound)
        with self._lock:
            if self._bound_names is None or key not in self._specialized:
                graph, bound = import_specialized(self.model, values)
                self._bound_names = bound
                key = tuple(
                    (values[n].dtype.str, values[n].shape, values[n].tobytes()) for n in bound
                )
                self._specialized[key] = self._add(graph, None)[0]
        return self._specialized[key], [values[n] for n in names if n not in bound]

    def _select(self, flat: list[Any]) -> tuple[Program, Any] | None:
        for entry in self._programs:
            try:
                entry[0].check(flat)
                return entry
            except InputError:
                continue
        return None

    def _compile_on_call(self, args: tuple[Any, ...], flat: list[Any]) -> tuple[Program, Any]:
        with self._lock:
            dynamic = (
                self.dynamic if self.dynamic is not None else _differing_dims(self._programs, flat)
            )
            log.info("compiling %s for shapes %s (dynamic=%s)", type(self.model).__name__,
                     [tuple(a.shape) for a in flat], dynamic)  # fmt: skip
            return self._compile_torch(tuple(_as_torch(a) for a in args), dynamic)


def _differing_dims(
    programs: list[tuple[Program, Any]], flat: list[Any]
) -> dict[int, dict[int, str]] | None:
    """Dims that differ from an earlier compile of the same ranks: make them symbolic."""
    for program, _ in programs:
        inputs = program.graph.inputs
        if len(inputs) != len(flat) or any(
            v.type.rank != len(a.shape) for v, a in zip(inputs, flat, strict=True)
        ):
            continue
        found: dict[int, dict[int, str]] = {}
        for i, (v, a) in enumerate(zip(inputs, flat, strict=True)):
            for axis, (d, n) in enumerate(zip(v.type.shape, a.shape, strict=True)):
                if not isinstance(d, int) or d != n:
                    found.setdefault(i, {})[axis] = f"d{i}_{axis}" if isinstance(d, int) else str(d)
        return found or None
    return None


def _is_onnx(model: Any) -> bool:
    if isinstance(model, str | os.PathLike):
        return str(model).endswith(".onnx")
    return type(model).__name__ == "ModelProto"


def _is_torch(flat: list[Any]) -> bool:
    return any(type(a).__module__.startswith("torch") for a in flat)


def _flatten(args: tuple[Any, ...]) -> list[Any]:
    import torch.utils._pytree as pytree

    leaves = pytree.tree_leaves(args)
    return [leaf for leaf in leaves if hasattr(leaf, "shape") and hasattr(leaf, "dtype")]


def _as_torch(a: Any) -> Any:
    import torch

    return torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a


def _restore(outputs: list[Any], out_spec: Any, *, as_torch: bool) -> Any:
    if as_torch:
        import torch

        values = [torch.from_dlpack(t) for t in outputs]
    else:
        values = [t.numpy() for t in outputs]
    if out_spec is None:
        return values
    import torch.utils._pytree as pytree

    return pytree.tree_unflatten(values, out_spec)


def compile(model: Any = None, example_inputs: Sequence[Any] | None = None, *, target: Any = "llvm",
            dynamic: Any = None, passes: Sequence[str] | None = None,
            cache: bool | None = None, tuning_records: Any = None,
            zero_shot: str = "off", quantize: Any = None) -> Any:  # fmt: skip
    """Compile a torch nn.Module or function, or an ONNX model (ModelProto or .onnx path).

    Works as `ember.compile(model, ...)`, `@ember.compile` and `@ember.compile(target=...)`.
    `cache=False` skips the on-disk compile cache (default: on unless EMBER_CACHE=0).
    `tuning_records` (a path or URL from `ember tune --tuning-records`) applies tuned schedules.
    `zero_shot="fallback"|"all"` schedules kernels without records by ember's cost model
    (docs/cost_model.md).
    `quantize=ember.QuantConfig("w8a8" | "w4a16" | "w4a4", ...)` quantizes the matmuls with
    constant weights (docs/quantization.md).
    """
    if model is None:
        return lambda fn: compile(fn, example_inputs, target=target, dynamic=dynamic, passes=passes,
                                  cache=cache, tuning_records=tuning_records,
                                  zero_shot=zero_shot, quantize=quantize)  # fmt: skip
    if not (_is_onnx(model) or callable(model)):
        raise EmberError(
            f"ember.compile takes a torch nn.Module or function, or an ONNX ModelProto or .onnx path; "
            f"got {type(model).__name__}"
        )
    return CompiledModel(model, example_inputs, target=target, dynamic=dynamic, passes=passes,
                         cache=cache, tuning_records=tuning_records,
                         zero_shot=zero_shot, quantize=quantize)  # fmt: skip
