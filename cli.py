"""The `ember` command line: compile, run, inspect, bench, db, tune, serve (see docs/cli.md).

Glue only: each subcommand calls into model_files/passes/codegen/runtime and prints. Errors are
one line plus a hint on stderr; exit code 2 for usage errors, 1 for model errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ember.cli_db import add_db_commands
from ember.cli_service import add_service_commands, add_service_option
from ember.cli_tune import add_tune_arguments, tune_command
from ember.errors import EmberError, UsageError
from ember.llm.cli import add_generate_command

__all__ = ["main"]

_EXAMPLES = {
    "compile": "ember compile model.onnx -o model.so --input-shapes x:[1,16]\n"
    "  ember compile mypkg.models:make_mlp --dynamic x:0=batch[1:64] \\\n"
    "      -p fold-constants{max-elements=64}",
    "run": "ember run model.so -i inputs.npz -o outputs.npz --repeat 20 --profile",
    "inspect": "ember inspect model.so --ir",
    "bench": "ember bench model.onnx --baselines onnxruntime --repeat 20",
    "tune": "ember tune model.onnx --trials 256 --tuning-records tuning.db --log tune.json\n"
    "  ember compile model.onnx --tuning-records tuning.db",
}


_HINTS = {
    "InputError": "`ember inspect MODEL` shows the inputs a model expects",
    "ArtifactError": "create the library again with `ember compile`",
    "UnsupportedError": "see docs/adding-an-op.md",
    "TuningError": "`ember db stats` shows what a tuning database holds",
    "EmberError": "rerun with `ember -v` for a traceback",
}


class _Parser(argparse.ArgumentParser):
    """argparse with ember's error format: one line, a hint, exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\nhint: see `{self.prog} --help`\n")
        sys.exit(2)


def _compile(args: argparse.Namespace) -> int:
    from ember.codegen.build import build
    from ember.codegen.export import emit_source, export_library, graph_metadata
    from ember.model_files import load_model, parse_dynamic, parse_input_shapes
    from ember.passes import run_pipeline

    names = _pipeline(args.pass_config or [], args.disable_pass or [])
    source = load_model(
        args.model, parse_input_shapes(args.input_shapes), parse_dynamic(args.dynamic)
    )
    optimized, times = run_pipeline(source.graph, names, dump_dir=args.dump_ir)
    if args.quantize:
        from ember.quantize import parse_quantize, quantize_graph

        optimized = quantize_graph(optimized, parse_quantize(args.quantize, args.calibration))
    database = None
    if args.service:
        from ember.cli_service import service_records

        database = service_records(args.service, optimized, args.target, args.tuning_records)
    elif args.tuning_records:
        from ember.autotune.records import schedule_database

        database = schedule_database(args.tuning_records, args.target)
    result = build(optimized, args.target, database=database)
    output = args.output or f"{Path(args.model.rpartition(':')[2]).stem}.so"
    path = export_library(result.executable, graph_metadata(optimized, result.target), output)
    print(f"wrote {path} ({path.stat().st_size:,} bytes) for target {result.target['kind']}")
    if args.emit_source:
        written = emit_source(result.executable, args.emit_source)
        if result.target["kind"] != "llvm":  # device code, compiled for the arch where possible
            from ember.codegen import gpu

            written += gpu.emit_source(result, result.target, args.emit_source)
        for file in written:
            print(f"wrote {file}")
    if args.print_pass_times:
        for name, seconds in {**times, **result.times}.items():
            print(f"  {name:<40} {seconds * 1e3:9.1f} ms")
    if args.dump_ir:
        print(f"IR after each pass is in {args.dump_ir}")
    return 0


def _pipeline(configs: Sequence[str], disabled: Sequence[str]) -> list[str]:
    """The default pipeline with -p options applied (or -p passes appended), -d passes removed."""
    from ember.errors import PassError
    from ember.passes import DEFAULT_PIPELINE, PASSES, parse_pass_spec

    try:
        specs = {parse_pass_spec(text).name: text for text in configs}
    except PassError as err:
        raise UsageError(f"--pass-config: {err}") from err
    unknown = sorted(set(disabled) - set(PASSES))
    if unknown:
        raise UsageError(
            f"--disable-pass: unknown pass {unknown[0]!r}; passes: {', '.join(sorted(PASSES))}"
        )
    names = [specs.get(name, name) for name in DEFAULT_PIPELINE]
    names += [text for name, text in specs.items() if name not in DEFAULT_PIPELINE]
    return [text for text in names if text.partition("{")[0] not in disabled]


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from ember.runtime import load
    from ember.runtime.inputs import make_inputs
    from ember.runtime.timing import measure_latency

    model = load(args.model)
    arrays = (
        _read_inputs(args.inputs, model)
        if args.inputs
        else make_inputs(model.inputs, model.metadata.symbol_ranges, args.fill_mode)
    )
    prepared = model.prepare(*arrays)
    outputs = model.run_prepared(prepared)
    for spec, out in zip(model.outputs, outputs, strict=True):
        print(f"output {spec.name}: {out.dtype}{list(out.shape)}")
    if args.output:
        np.savez(
            args.output,
            **{spec.name: out for spec, out in zip(model.outputs, outputs, strict=True)},
        )
        print(f"wrote {args.output}")
    stats = measure_latency(
        lambda: model.run_prepared(prepared), repeat=args.repeat, number=args.number
    )
    print(
        f"latency over {stats.repeat} x {stats.number} runs (ms): mean {stats.mean_ms:.4f}  "
        f"median {stats.median_ms:.4f}  min {stats.min_ms:.4f}  max {stats.max_ms:.4f}  "
        f"std {stats.std_ms:.4f}"
    )
    if args.profile:
        rows = model.profile(*arrays)
        total = sum(r.total_ms for r in rows) or 1.0
        print(f"{'kernel':<48} {'calls':>5} {'ms':>10} {'%':>6}")
        for r in rows[: args.print_top]:
            print(f"{r.name:<48} {r.calls:>5} {r.total_ms:>10.4f} {100 * r.total_ms / total:>6.1f}")
    return 0


def _read_inputs(path: str, model: Any) -> list[Any]:
    import numpy as np

    names = [s.name for s in model.inputs]
    try:
        loaded = np.load(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read inputs from {path}: {err}") from err
    if isinstance(loaded, np.ndarray):
        return [loaded]
    keys = list(loaded.keys())
    if all(n in keys for n in names):
        return [loaded[n] for n in names]
    if len(keys) == len(names) and all(f"arr_{i}" in keys for i in range(len(names))):
        return [loaded[f"arr_{i}"] for i in range(len(names))]
    raise UsageError(
        f"{path} holds {keys}; the model's inputs are {names} "
        f"(save with np.savez(path, name=array))"
    )


def _inspect(args: argparse.Namespace) -> int:
    if args.model.endswith(".so"):
        from ember.runtime.library import read_metadata

        meta = read_metadata(args.model)
        inputs, outputs, ranges = meta.inputs, meta.outputs, meta.symbol_ranges
        histogram, param_bytes, ir = meta.op_histogram or {}, meta.param_bytes, meta.ir
        print(f"{args.model}: ember artifact format {meta.format_version}, target {meta.target}")
        print("built with " + ", ".join(f"{k} {v}" for k, v in meta.versions.items()))
    else:
        from ember.codegen.export import graph_metadata
        from ember.model_files import load_model

        g = load_model(args.model, {}, {}).graph
        meta = graph_metadata(g, {})
        inputs, outputs, ranges = meta.inputs, meta.outputs, meta.symbol_ranges
        histogram, param_bytes, ir = g.op_histogram(), g.param_bytes, str(g)
        print(f"{args.model}: graph {g.name!r}, {len(g.nodes)} nodes (as imported, before passes)")
    for title, specs in (("inputs", inputs), ("outputs", outputs)):
        print(f"{title}:")
        for spec in specs:
            print(f"  {spec}")
    if ranges:
        print(
            "symbols: "
            + ", ".join(
                f"{k} in [{lo}, {hi if hi is not None else 'inf'}]"
                for k, (lo, hi) in ranges.items()
            )
        )
    print(f"parameters: {param_bytes:,} bytes")
    print("ops: " + ", ".join(f"{name} x{count}" for name, count in histogram.items()))
    if args.ir:
        print(ir)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import numpy as np

    from ember.baselines import BASELINES, run_bench
    from ember.codegen.build import build
    from ember.codegen.export import graph_metadata
    from ember.model_files import load_model, parse_input_shapes
    from ember.passes import run_pipeline
    from ember.runtime import Executor, to_tvm
    from ember.runtime.inputs import make_inputs

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    if set(baselines) - set(BASELINES):
        raise UsageError(
            f"--baselines: unknown {sorted(set(baselines) - set(BASELINES))}; "
            f"choose from {BASELINES}"
        )
    source = load_model(args.model, parse_input_shapes(args.input_shapes), {})
    optimized, _ = run_pipeline(source.graph)
    result = build(optimized, args.target)
    if source.example_inputs is not None and not args.input_shapes:
        arrays = [np.asarray(t.detach().numpy()) for t in source.example_inputs]
    else:
        meta = graph_metadata(optimized, result.target)
        arrays = make_inputs(meta.inputs, meta.symbol_ranges, "random")
    executor = Executor(result.executable)
    tensors = [to_tvm(a, executor.device) for a in arrays]
    rows = run_bench(
        source,
        lambda: [t.numpy() for t in executor.run(tensors)],
        arrays,
        baselines,
        repeat=args.repeat,
        number=args.number,
    )
    print(
        f"{'implementation':<16} {'median ms':>10} {'min ms':>10} {'vs ember':>9} {'max|diff|':>10}"
    )
    ember_ms = rows[0].latency.median_ms if rows[0].latency else 1.0
    for row in rows:
        if row.latency is None:
            print(f"{row.name:<16} {'-':>10} {'-':>10} {'-':>9} {'-':>10}  ({row.note})")
            continue
        diff = f"{row.max_abs_diff:.2e}" if row.max_abs_diff is not None else "-"
        print(
            f"{row.name:<16} {row.latency.median_ms:>10.4f} {row.latency.min_ms:>10.4f} "
            f"{row.latency.median_ms / ember_ms:>8.2f}x {diff:>10}"
        )
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help="an .onnx file, a torch.export .pt2 file, or "
        "package.module:factory (or path/file.py:factory) returning (model, example_inputs)",
    )
    p.add_argument(
        "--target",
        default="llvm",
        help="llvm (this CPU, default), cuda, rocm, or a TVM target JSON dict",
    )
    p.add_argument(
        "--input-shapes",
        metavar="SHAPES",
        help="fix input shapes: NAME:[1,16],NAME2:[4] (ONNX and factories)",
    )


def _parser() -> _Parser:
    parser = _Parser(
        prog="ember", description="ember: compile, run, inspect and benchmark ML models."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress; show tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    text = argparse.RawDescriptionHelpFormatter

    def command(name: str, summary: str) -> _Parser:
        return sub.add_parser(
            name,
            help=summary,
            description=f"{summary}\n\nexample:\n  {_EXAMPLES[name]}",
            formatter_class=text,
        )

    p = command(
        "compile", "compile a model into one shared library (.so) with weights and metadata"
    )
    _add_model_options(p)
    p.add_argument("-o", "--output", help="the .so to write (default: MODEL's name + .so)")
    p.add_argument(
        "--dynamic",
        action="append",
        metavar="NAME:AXIS=SYMBOL[MIN:MAX]",
        help="make an input axis symbolic, e.g. x:0=batch or x:0=batch[1:64]; repeatable",
    )
    p.add_argument(
        "-p",
        "--pass-config",
        action="append",
        metavar="PASS{opt=val}",
        help="set a pass's options (or append a pass), e.g. fold-constants{max-elements=64}",
    )
    p.add_argument(
        "-d", "--disable-pass", action="append", metavar="NAME", help="skip a pass of the pipeline"
    )
    p.add_argument(
        "--dump-ir", metavar="DIR", help="write the IR before and after each pass into DIR"
    )
    p.add_argument(
        "--print-pass-times", action="store_true", help="print the time of each pass and build step"
    )
    p.add_argument(
        "--emit-source",
        metavar="DIR",
        help="write the VM bytecode and kernel source (LLVM IR, asm, CUDA) into DIR",
    )
    p.add_argument(
        "--tuning-records", metavar="DB", help="apply tuned schedules from `ember tune`'s database"
    )
    p.add_argument(
        "--quantize",
        metavar="SCHEME",
        help="w8a8 | w4a16 | w4a4, options after ':' (w4a16:group=128,method=rtn); "
        "see docs/quantization.md",
    )
    p.add_argument(
        "--calibration",
        metavar="NPZ",
        help="inputs for --quantize's calibration (default: random batches, with a warning)",
    )
    add_service_option(p)
    p.set_defaults(handler=_compile)

    p = command(
        "run", "run a compiled .so on inputs, report latency and optionally per-kernel times"
    )
    p.add_argument("model", metavar="MODEL.so", help="a library written by `ember compile`")
    p.add_argument(
        "-i", "--inputs", metavar="FILE", help=".npz keyed by input name (or arr_0...), or one .npy"
    )
    p.add_argument(
        "-o", "--output", metavar="FILE.npz", help="save the outputs, keyed by output name"
    )
    p.add_argument(
        "--fill-mode",
        choices=("random", "zeros", "ones"),
        default="random",
        help="inputs to make without -i (symbolic dims at the low end of their range)",
    )
    p.add_argument("--repeat", type=_positive, default=10, help="timed samples (default 10)")
    p.add_argument(
        "--number", type=_positive, default=1, help="runs averaged per sample (default 1)"
    )
    p.add_argument("--profile", action="store_true", help="print per-kernel times of one run")
    p.add_argument(
        "--print-top", type=_positive, default=20, metavar="N", help="kernels shown by --profile"
    )
    p.set_defaults(handler=_run)

    p = command(
        "inspect", "show a model's inputs, outputs, symbolic dims, ops, parameter size and versions"
    )
    p.add_argument(
        "model",
        metavar="MODEL|MODEL.so",
        help="a .so from `ember compile`, or a MODEL as for compile",
    )
    p.add_argument("--ir", action="store_true", help="also print the graph IR")
    p.set_defaults(handler=_inspect)

    p = command("bench", "compare ember's latency with torch eager, torch.compile and onnxruntime")
    _add_model_options(p)
    p.add_argument(
        "--baselines",
        default="eager,torch.compile,onnxruntime",
        help="comma-separated subset of eager,torch.compile,onnxruntime (those that apply)",
    )
    p.add_argument("--repeat", type=_positive, default=20, help="timed samples (default 20)")
    p.add_argument(
        "--number", type=_positive, default=1, help="runs averaged per sample (default 1)"
    )
    p.set_defaults(handler=_bench)
    add_db_commands(sub)

    p = command("tune", "tune a model's kernels with MetaSchedule into a tuning database")
    _add_model_options(p)
    add_tune_arguments(p)
    add_service_option(p)
    p.set_defaults(handler=tune_command)
    add_service_commands(sub)
    add_generate_command(sub)
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ember` script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    if not args.verbose:  # torch and onnx deprecation chatter is not the user's concern here
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    prog = f"ember {args.command}"
    try:
        return args.handler(args)
    except UsageError as err:
        print(f"{prog}: error: {err}\nhint: see `{prog} --help`", file=sys.stderr)
        return 2
    except EmberError as err:
        if args.verbose:
            raise
        notes = "".join(f"\n{note}" for note in getattr(err, "__notes__", []))
        print(f"{prog}: error: {type(err).__name__}: {err}{notes}", file=sys.stderr)
        print(f"hint: {_HINTS.get(type(err).__name__, _HINTS['EmberError'])}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ember inspect ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
