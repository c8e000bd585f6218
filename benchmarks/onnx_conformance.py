"""ONNX backend-node conformance: every `onnx.backend.test` node case through ember and through
ONNX Runtime, with pass rates per backend.

    python -m benchmarks.onnx_conformance [--limit N] [--filter REGEX] [--interpreter] [--no-ort]

Without --interpreter, cases run through `ember.compile` (on-disk cache off, so every case is
really built). Each case runs in a worker process with a timeout, so a crash or hang costs only
that case; workers import the compiler once and are reused. Results go to
bench-results/onnx_conformance.{json,md} (onnx_conformance_interpreter.* with --interpreter).

Graph inputs needed at import time (Reshape's shape, TopK's K, ...) are bound to each data set's
values: by `ember.compile` itself (it specializes on them and guards), and by this script for the
interpreter. Cases that pass only that way are counted separately. ONNX Runtime refuses IR
versions newer than it knows even for opsets it implements: such models are retried with the IR
version lowered to ORT's maximum, and the cases that needed it are counted separately too.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import multiprocessing.connection
import platform
import re
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RTOL, ATOL = 1e-3, 1e-5
LOW_PRECISION = {"bfloat16": (1e-2, 1e-2), "float16": (1e-3, 1e-3)}  # dtype: (rtol, atol)
STATUSES = ("pass", "fail", "unsupported", "error", "timeout", "crash")


def _load_cases() -> list[Any]:
    warnings.filterwarnings("ignore")
    from onnx.backend.test.case.node import collect_testcases

    return sorted(collect_testcases(), key=lambda c: c.name)


def _compare(got: list[Any], expected: list[Any]) -> None:
    if len(got) != len(expected):
        raise AssertionError(f"{len(got)} outputs, expected {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        g, e = np.asarray(g), np.asarray(e)
        if g.dtype != e.dtype or g.shape != e.shape:
            raise AssertionError(
                f"output {i}: got {g.dtype}{list(g.shape)}, expected {e.dtype}{list(e.shape)}"
            )
        if e.dtype.kind in "biuO" or e.dtype.kind == "U":
            np.testing.assert_array_equal(g, e, err_msg=f"output {i}")
        else:
            rtol, atol = LOW_PRECISION.get(e.dtype.name, (RTOL, ATOL))
            np.testing.assert_allclose(
                g.astype(np.float64),
                e.astype(np.float64),
                rtol=rtol,
                atol=atol,
                equal_nan=True,
                err_msg=f"output {i}",
            )


def _ember_runner(model: Any, mode: str) -> Any:
    import ember
    from ember.frontend.onnx import from_onnx
    from ember.ir import interpret

    if mode == "compile":
        fn = ember.compile(model, cache=False)
        return lambda *xs: _as_list(fn(*xs))
    graph = from_onnx(model)
    return lambda *xs: interpret(graph, *xs)


def _specialize(model: Any, inputs: list[np.ndarray]) -> tuple[Any, list[np.ndarray], list[str]]:
    """Bind the graph inputs that ember needs at import time (shape-like operands such as
    Reshape's shape or TopK's K) to this data set's values, as initializers."""
    import onnx
    from onnx import numpy_helper

    from ember.frontend.onnx import ConstantInputError, from_onnx

    graph_inputs = [i.name for i in model.graph.input]
    values = dict(zip(graph_inputs, inputs, strict=False))
    bound: list[str] = []
    while True:
        try:
            from_onnx(model)
            break
        except ConstantInputError as err:
            if err.input_name in bound or err.input_name not in values:
                raise
            bound.append(err.input_name)
            model = onnx.ModelProto.FromString(model.SerializeToString())
            kept = [i for i in model.graph.input if i.name != err.input_name]
            del model.graph.input[:]
            model.graph.input.extend(kept)
            model.graph.initializer.append(
                numpy_helper.from_array(values[err.input_name], err.input_name)
            )
    remaining = [values[i.name] for i in model.graph.input if i.name in values]
    return model, remaining, bound


_IR_VERSION_ERROR = re.compile(
    r"Unsupported model IR version: \d+, max supported IR version: (\d+)"
)


def _ort_runner(model: Any, lowered: list[int]) -> Any:
    """An ORT session. ORT refuses IR versions and opset stamps newer than its release even when
    it implements every op: such a model is retried with the IR version lowered to ORT's maximum
    and the opset lowered to the newest one ORT accepts at which no op of the model changed; each
    lowering is appended to `lowered`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4

    def session(m: Any) -> Any:
        return onnxruntime.InferenceSession(
            m.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    try:
        sess = session(model)
    except Exception as err:
        found = _IR_VERSION_ERROR.search(str(err))
        if found is None and _OPSET_ERROR not in str(err):
            raise
        model = type(model).FromString(model.SerializeToString())
        if found is not None:
            model.ir_version = int(found.group(1))
            lowered.append(model.ir_version)
        sess = _with_older_opset(model, session, lowered)
    names = [i.name for i in sess.get_inputs()]
    return lambda *xs: sess.run(None, dict(zip(names, xs, strict=False)))


_OPSET_ERROR = "is under development"


def _with_older_opset(model: Any, session: Any, lowered: list[int]) -> Any:
    """A session for `model` stamped with the newest opset that ORT accepts and that gives every
    op in the graph the schema it has at the model's own opset."""
    import onnx

    stamp = next(o for o in model.opset_import if o.domain in ("", "ai.onnx"))
    top = stamp.version
    ops = {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")}

    def since(op: str, opset: int) -> int | None:
        try:
            return onnx.defs.get_schema(op, opset).since_version
        except Exception:
            return None

    error: Exception | None = None
    for version in [top, *range(top - 1, 12, -1)]:
        if any(since(op, version) != since(op, top) for op in ops):
            break  # an op's semantics differ at older opsets: stop lowering
        stamp.version = version
        try:
            result = session(model)
        except Exception as err:
            if _OPSET_ERROR not in str(err) and _IR_VERSION_ERROR.search(str(err)) is None:
                raise
            error = err
            continue
        if version != top:
            lowered.append(version)
        return result
    assert error is not None
    raise error


def _as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, list | tuple) else [out]


def _classify(err: BaseException) -> str:
    from ember.errors import UnsupportedError

    return "unsupported" if isinstance(err, UnsupportedError) else "error"


def _array(x: Any) -> Any:
    from onnx import TensorProto, numpy_helper

    if isinstance(x, TensorProto):
        return numpy_helper.to_array(x)
    return np.asarray(x) if isinstance(x, np.generic) else x


def _run(case: Any, backend: str, mode: str) -> dict[str, Any]:
    bound: list[str] = []
    lowered: list[int] = []
    try:
        for raw_inputs, raw_outputs in case.data_sets:
            inputs, outputs = [_array(x) for x in raw_inputs], [_array(x) for x in raw_outputs]
            if not all(isinstance(x, np.ndarray) for x in [*inputs, *outputs]):
                return {"status": "unsupported", "detail": "non-tensor inputs (sequence/optional)"}
            if backend == "ort":
                got = _ort_runner(case.model, lowered)(*inputs)
            else:
                model, bound_inputs, bound = _specialize(case.model, inputs)
                if mode == "compile":  # ember.compile binds shape-like inputs itself, guarded
                    got = _ember_runner(case.model, mode)(*inputs)
                else:
                    got = _ember_runner(model, mode)(*bound_inputs)
            _compare(_as_list(got), outputs)
    except AssertionError as err:
        return {"status": "fail", "detail": str(err).strip()[:600], "bound": bound,
                "ir_lowered": bool(lowered)}  # fmt: skip
    except Exception as err:
        last = traceback.extract_tb(err.__traceback__)[-1]
        detail = f"{type(err).__name__}: {err} ({last.name})"[:600]
        return {"status": _classify(err), "detail": detail, "bound": bound,
                "ir_lowered": bool(lowered)}  # fmt: skip
    return {"status": "pass", "detail": "", "bound": bound, "ir_lowered": bool(lowered)}


def _worker(
    conn: multiprocessing.connection.Connection, cases: list[Any], mode: str, backend: str
) -> None:
    warnings.filterwarnings("ignore")
    if backend == "ember" and mode == "compile":
        import ember.codegen  # noqa: F401  # import TVM once per worker, not in the first case
    while True:
        index = conn.recv()
        if index is None:
            return
        conn.send(_run(cases[index], backend, mode))


class _Pool:
    """Workers that each run one case at a time; a worker that hangs or dies is replaced."""

    def __init__(
        self, size: int, cases: list[Any], mode: str, backend: str, timeout: float
    ) -> None:
        self.ctx = multiprocessing.get_context("fork")
        self.args = (cases, mode, backend)
        self.timeout = timeout
        self.workers = [self._spawn() for _ in range(size)]

    def _spawn(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=True)
        proc.start()
        return proc, parent

    def run(self, indices: list[int], on_result: Any) -> None:
        pending = collections.deque(indices)
        busy: dict[int, tuple[int, float]] = {}  # worker slot -> (case index, start time)
        while pending or busy:
            for slot in range(len(self.workers)):
                if slot not in busy and pending:
                    index = pending.popleft()
                    self.workers[slot][1].send(index)
                    busy[slot] = (index, time.monotonic())
            ready = multiprocessing.connection.wait([self.workers[s][1] for s in busy], timeout=0.5)
            for slot, (index, start) in list(busy.items()):
                proc, conn = self.workers[slot]
                if conn in ready:
                    try:
                        result = conn.recv()
                    except EOFError:
                        result = {
                            "status": "crash",
                            "detail": f"worker died (exit code {proc.exitcode})",
                        }
                        self._replace(slot)
                elif time.monotonic() - start > self.timeout:
                    result = {"status": "timeout", "detail": f"> {self.timeout:.0f} s"}
                    self._replace(slot)
                else:
                    continue
                result["seconds"] = round(time.monotonic() - start, 3)
                del busy[slot]
                on_result(index, result)

    def _replace(self, slot: int) -> None:
        proc, conn = self.workers[slot]
        proc.kill()
        proc.join()
        conn.close()
        self.workers[slot] = self._spawn()

    def close(self) -> None:
        for proc, conn in self.workers:
            conn.send(None)
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def _summary(records: list[dict[str, Any]], backends: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in backends:
        counts = collections.Counter(r[backend]["status"] for r in records)
        out[backend] = {
            "total": len(records),
            **{s: counts.get(s, 0) for s in STATUSES},
            "pass_rate": round(counts.get("pass", 0) / max(len(records), 1), 4),
            "passed_with_bound_inputs": sum(
                1 for r in records if r[backend]["status"] == "pass" and r[backend].get("bound")
            ),
            "passed_with_ir_lowered": sum(
                1 for r in records
                if r[backend]["status"] == "pass" and r[backend].get("ir_lowered")
            ),
        }  # fmt: skip
    return out


def _markdown(summary: dict[str, Any], records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = (
        ["# ONNX backend-node conformance", ""] + [f"- {k}: {v}" for k, v in meta.items()] + [""]
    )
    lines += ["| backend | cases | " + " | ".join(STATUSES) + " | pass rate | needed bound inputs "
              "| needed IR lowered | pass rate as given |",
              "|---|---|" + "---|" * len(STATUSES) + "---|---|---|---|"]  # fmt: skip
    for backend, s in summary.items():
        cells = " | ".join(str(s[k]) for k in STATUSES)
        plain = s["pass"] - s["passed_with_bound_inputs"] - s["passed_with_ir_lowered"]
        lines.append(
            f"| {backend} | {s['total']} | {cells} | {100 * s['pass_rate']:.1f}% "
            f"| {s['passed_with_bound_inputs']} | {s['passed_with_ir_lowered']} "
            f"| {100 * plain / max(s['total'], 1):.1f}% |"
        )
    reasons = collections.Counter(
        re.sub(r"'[^']*'|\d+", "_", r["ember"]["detail"].split("\n")[0])[:120]
        for r in records if r["ember"]["status"] != "pass"
    )  # fmt: skip
    lines += ["", "## Most common ember failure reasons", ""]
    lines += [f"- {n} x `{reason}`" for reason, n in reasons.most_common(25)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="run only the first N matching cases"
    )
    parser.add_argument("--filter", default=None, help="regex on case names")
    parser.add_argument("--interpreter", action="store_true", help="import + reference interpreter")
    parser.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)

    cases = _load_cases()
    indices = [i for i, c in enumerate(cases) if not args.filter or re.search(args.filter, c.name)]
    indices = indices[: args.limit] if args.limit else indices
    mode = "interpreter" if args.interpreter else "compile"
    backends = ["ember"] + ([] if args.no_ort else ["ort"])
    records = [{"case": cases[i].name} for i in indices]
    position = {index: k for k, index in enumerate(indices)}
    start = time.time()
    for backend in backends:
        pool = _Pool(max(1, min(args.workers, 2)), cases, mode, backend, args.timeout)

        def store(index: int, result: dict[str, Any], backend: str = backend) -> None:
            records[position[index]][backend] = result

        try:
            pool.run(indices, store)
        finally:
            pool.close()
    summary = _summary(records, backends)
    meta = {"ember_mode": mode, "cases": len(records), "filter": args.filter, "limit": args.limit,
            "seconds": round(time.time() - start, 1), "python": platform.python_version(),
            "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime")}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "onnx_conformance" + ("_interpreter" if mode == "interpreter" else "")
    (args.out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "cases": records}, indent=1)
    )
    (args.out / f"{stem}.md").write_text(_markdown(summary, records, meta))
    for backend, s in summary.items():
        print(f"{backend:6s} {s['pass']}/{s['total']} passed ({100 * s['pass_rate']:.1f}%)  "
              + "  ".join(f"{k}={s[k]}" for k in STATUSES[1:]))  # fmt: skip
    print(f"mode={mode}; wrote {args.out / stem}.json and .md")
    return 0


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
