"""Build a graph for a target: lower to Relax, fuse, apply default schedules, compile."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax

from ember.codegen.balance import tir_pipeline
from ember.codegen.cpu_matmul import panel_width
from ember.codegen.destinations import write_into_destinations
from ember.codegen.fast_math import fast_math as use_fast_math
from ember.codegen.gpu_schedule import schedule_gpu
from ember.codegen.lower import to_relax
from ember.codegen.pack_weights import pack_matmul_weights
from ember.codegen.rocm_link import use_system_toolchain
from ember.codegen.schedule import default_schedule_rules
from ember.codegen.target import resolve_target
from ember.errors import CodegenError
from ember.ir import Graph

__all__ = ["BuildResult", "build", "fuse"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """A compiled Relax executable with the target it was built for and how long each step took."""

    executable: Any
    target: dict[str, Any]
    times: dict[str, float]
    destinations: bool = False  # main writes its outputs into tensors passed after the inputs


def fuse(mod: Any) -> Any:
    """TVM's operator fusion: ember hands fusion decisions to Relax FuseOps/FuseTIR."""
    return tvm.transform.Sequential(
        [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
        ]
    )(mod)


def build(
    g: Graph,
    target: str | dict[str, Any] = "llvm",
    *,
    schedule: bool = True,
    fast_math: bool = True,
    database: Any | None = None,
    zero_shot: Callable[[Any, dict[str, Any]], Any] | None = None,
    destinations: bool = False,
) -> BuildResult:
    """Compile `g`; `schedule=False` keeps TVM's unscheduled TIR (the baseline), and
    `fast_math=False` keeps libm's float32 exp/erf/tanh/sigmoid on CPUs (codegen/fast_math.py).

    `database` (a MetaSchedule Database, looked up by the caller) supplies tuned schedules: each
    kernel with a record gets its best one, the others ember's default schedules.
    `zero_shot(mod, spec)` (`ember.autotune.zero_shot`, passed in by the caller) may schedule
    kernels without records by the cost model first, on CPUs.
    `destinations`: `main` takes one more tensor per output, after the inputs, and writes the
    output into it (codegen/destinations.py).
    """
    spec = resolve_target(target)
    tgt = tvm.target.Target(spec)
    times: dict[str, float] = {}
    if spec["kind"] == "rocm":
        use_system_toolchain()
    start = time.perf_counter()
    if schedule and spec["kind"] == "llvm":  # the layout CPU Matmul streams; GPUs keep matmul
        g = pack_matmul_weights(
            g, panel=panel_width(tgt), wide_panel=panel_width(tgt, symbolic_rows=True)
        )
    with tgt:  # ops with target-specific computes (top-k) look at the current target
        mod = to_relax(g)
    times["lower"] = time.perf_counter() - start
    try:
        with tgt:
            start = time.perf_counter()
            mod = fuse(mod)
            times["fuse"] = time.perf_counter() - start
            start = time.perf_counter()
            if schedule:
                mod = _apply_schedules(mod, spec, tgt, database, zero_shot)
            # after scheduling: tuning records match the libm calls, and MetaSchedule's flop
            # estimate cannot read fast math's Let bindings (autotune/measure.py does the same)
            if fast_math and spec["kind"] == "llvm":  # GPUs have fast hardware exp/tanh already
                mod = use_fast_math(mod)
            times["schedule"] = time.perf_counter() - start
            if destinations:
                mod = write_into_destinations(mod)
        start = time.perf_counter()
        relax_pipeline = "default"
        if spec["kind"] == "llvm":
            relax_pipeline = tvm.transform.Sequential(
                [relax.get_pipeline("default"), _shape_funcs_noalias]
            )
        executable = tvm.compile(
            mod, tgt, relax_pipeline=relax_pipeline, tir_pipeline=tir_pipeline(tgt)
        )
        times["compile"] = time.perf_counter() - start
    except CodegenError as err:
        err.add_note(f"the Relax/TIR module is at {_dump(mod)}")
        raise
    except Exception as err:  # TVM raises RuntimeError/ValueError/TypeError subclasses alike
        dump = _dump(mod)
        raise CodegenError(
            f"TVM failed to build graph {g.name!r} for target {spec}: {_first_line(err)}\n"
            f"the Relax/TIR module is at {dump}; please report it with that file"
        ) from err
    log.info("built %s for %s in %s", g.name, spec.get("kind"), times)
    return BuildResult(executable, spec, times, destinations)


@tvm.transform.module_pass(opt_level=0, name="ShapeFuncsNoAlias")
def _shape_funcs_noalias(mod: Any, _ctx: Any) -> Any:
    """`tirx.noalias` on the host shape functions that VMShapeLower makes for symbolic shapes
    (they read and write only the VM's shape heap). While one function of the module lacks it,
    LLVM codegen gives no kernel its noalias compute scope: a dynamic-batch matmul then stores
    its register accumulators to memory on every reduction step (measured 2-3x slower)."""
    marked = {
        gv: func.with_attr("tirx.noalias", True)
        for gv, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc)
        and func.attrs is not None
        and func.attrs.get("tirx.is_host_func")
        and not func.attrs.get("tirx.noalias")
    }
    if not marked:
        return mod
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in marked.items():
        out[gv] = func
    return out


def _apply_schedules(mod: Any, spec: dict[str, Any], tgt: Any, database: Any | None,
                     zero_shot: Callable[[Any, dict[str, Any]], Any] | None) -> Any:  # fmt: skip
    if database is not None:  # marks the kernels it schedules: the default rules skip them
        with database:
            mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    rules = default_schedule_rules(spec)
    if spec["kind"] == "llvm":
        from tvm.s_tir import dlight

        if zero_shot is not None:  # marks the kernels it schedules, like the database
            mod = zero_shot(mod, spec)
        return dlight.ApplyDefaultSchedule(*rules)(mod)
    return schedule_gpu(mod, rules, tgt)


def _dump(mod: Any) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="ember-failed-", delete=False) as f:
        f.write(mod.script())
    return f.name


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
