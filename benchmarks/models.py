"""Model zoo benchmark: compile time and median latency of ember vs torch eager, torch.compile
(Inductor), onnxruntime and TVM's own Relax frontend with its default pipeline, in one run.

    python -m benchmarks.models [--models gpt2,llama] [--batches 1,8] [--seq 32] [--repeat 20]

Every implementation's output is checked against eager before it is timed; one that fails to
build or disagrees is reported as such, not timed.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks._harness import Row, Stats, compare, environment, print_table, write_jsonl
from examples.zoo import ZOO, build

Runner = Callable[[], Any]


def _first_tensor(out: Any) -> np.ndarray:
    if isinstance(out, list | tuple):
        return _first_tensor(out[0])
    if hasattr(out, "logits"):
        return _first_tensor(out.logits)
    if hasattr(out, "last_hidden_state"):
        return _first_tensor(out.last_hidden_state)
    return out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def _ember(model: torch.nn.Module, ids: torch.Tensor) -> Runner:
    import ember

    compiled = ember.compile(model, example_inputs=(ids,), target="llvm", cache=False)
    return lambda: compiled(ids)


def _inductor(model: torch.nn.Module, ids: torch.Tensor) -> Runner:
    compiled = torch.compile(model)
    compiled(ids)  # compiles
    return lambda: compiled(ids)


def _onnxruntime(model: torch.nn.Module, ids: torch.Tensor) -> Runner:
    import onnxruntime

    buffer = io.BytesIO()
    program = torch.onnx.export(model, (ids,), dynamo=True, verbose=False)
    program.save(buffer) if hasattr(program, "save") else None
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: ids.numpy()}
    return lambda: session.run(None, feed)


def _tvm_default(model: torch.nn.Module, ids: torch.Tensor) -> Runner:
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    from ember.codegen.target import host_cpu

    exported = torch.export.export(model, (ids,), strict=False)
    mod = from_exported_program(exported, keep_params_as_input=False)
    executable = tvm.compile(mod, tvm.target.Target(host_cpu()))
    vm = tvm.relax.VirtualMachine(executable, tvm.cpu())
    arg = tvm.runtime.tensor(ids.numpy())
    return lambda: vm["main"](arg)


IMPLEMENTATIONS: dict[str, Callable[[torch.nn.Module, torch.Tensor], Runner]] = {
    "ember": _ember,
    "torch.compile": _inductor,
    "onnxruntime": _onnxruntime,
    "tvm-default": _tvm_default,
}


def _tvm_output(out: Any) -> np.ndarray:
    while not hasattr(out, "numpy"):
        out = out[0]
    return out.numpy()


def bench_model(name: str, batch: int, seq: int, repeat: int) -> Row:
    model, ids = build(name, batch=batch, seq=seq)
    with torch.no_grad():
        expected = _first_tensor(model(ids))
        runners: dict[str, Runner] = {"eager": lambda: model(ids)}
        compile_s: dict[str, float] = {}
        notes: dict[str, str] = {}
        for impl, make in IMPLEMENTATIONS.items():
            start = time.perf_counter()
            try:
                run = make(model, ids)
                got = _tvm_output(run()) if impl == "tvm-default" else _first_tensor(run())
            except (
                Exception
            ) as err:  # a baseline that cannot build this model is reported, not timed
                notes[impl] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
                continue
            compile_s[impl] = time.perf_counter() - start
            error = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))
            if error > 1e-3:
                notes[impl] = f"wrong output (max rel error {error:.1e})"
                continue
            runners[impl] = run
        stats: dict[str, Stats] = compare(runners, warmup=3, repeat=repeat, budget_s=20.0)
    extra = {"compile_s": {k: round(v, 2) for k, v in compile_s.items()}, "notes": notes}
    return Row(name, f"batch {batch} x seq {seq}", stats, extra=extra)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
    rows = []
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            row = bench_model(name, batch, args.seq, args.repeat)
            rows.append(row)
            print(
                f"{name} batch {batch}: compile s {row.extra['compile_s']} {row.extra['notes'] or ''}",
                flush=True,
            )
    print()
    print_table(rows, baseline="eager")
    print("\ncompile time (s):")
    for row in rows:
        print(
            f"  {row.case:<10} {row.shape:<18} {row.extra['compile_s']}  {row.extra['notes'] or ''}"
        )
    write_jsonl(rows, "bench-results/models.jsonl", env=environment(), target="llvm")


if __name__ == "__main__":
    main()
