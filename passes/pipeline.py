"""The default pipeline and `run_pipeline`: verify after each pass, time it, dump IR if asked."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from ember import config
from ember.errors import EmberError, PassError
from ember.ir import Graph, print_graph, verify
from ember.passes.registry import PASSES, parse_pass_spec

__all__ = ["DEFAULT_PIPELINE", "run_pipeline"]

log = logging.getLogger(__name__)

DEFAULT_PIPELINE: tuple[str, ...] = (
    "canonicalize",  # first: exposes constants hidden behind no-op reshapes/casts
    "fold-constants",
    "fold-table-lookups",  # after folding: a Linear's transposed weight is a constant now
    "strength-reduce",  # after folding: exponents computed from constants are constants now
    "eliminate-common-subexpressions",
    "canonicalize",  # folding and merging create new reshape/transpose chains
    "eliminate-dead-code",
    # operator fusion is TVM's: Relax FuseOps/FuseTIR run in codegen (see README)
)


def run_pipeline(
    g: Graph,
    names: Sequence[str] | None = None,
    *,
    verify_each: bool | None = None,
    dump_dir: str | os.PathLike[str] | None = None,
    disabled: Sequence[str] = (),
) -> tuple[Graph, dict[str, float]]:
    """Run the named passes (default: DEFAULT_PIPELINE) in order; returns the graph and times.

    `verify_each` defaults to EMBER_VERIFY=1; `dump_dir` writes `NN-<pass>.txt` after each pass
    (and `00-input.txt` before the first).
    """
    specs = [parse_pass_spec(n) for n in (DEFAULT_PIPELINE if names is None else names)]
    specs = [s for s in specs if s.name not in disabled]
    if verify_each is None:
        verify_each = config.verify_each_pass()
    dump = Path(dump_dir) if dump_dir else None
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / "00-input.txt").write_text(print_graph(g) + "\n")
    times: dict[str, float] = {}
    for i, spec in enumerate(specs, start=1):
        start = time.perf_counter()
        try:
            g = PASSES[spec.name](g, **spec.options)
            if verify_each:
                verify(g)
        except Exception as err:
            done = ", ".join(s.name for s in specs[: i - 1]) or "nothing"
            wrapped = PassError(f"in pass {spec.name!r} (after: {done}): {err}")
            if isinstance(err, EmberError):
                wrapped.__notes__ = list(getattr(err, "__notes__", []))
            raise wrapped from err
        elapsed = time.perf_counter() - start
        times[f"pass:{spec.name}"] = times.get(f"pass:{spec.name}", 0.0) + elapsed
        log.debug("pass %s took %.1f ms", spec.name, elapsed * 1e3)
        if dump:
            (dump / f"{i:02d}-{spec.name}.txt").write_text(print_graph(g) + "\n")
    return g, times
