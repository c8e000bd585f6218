"""`ember serve`, `ember service token create|worker`, and the `--service URL` client of `ember tune`
and `ember compile` (the logic is in ember.autotune.service; this module parses and prints)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ember.errors import ServiceError, UsageError

__all__ = ["add_service_commands", "add_service_option", "remote_tune", "service_records"]

_COST_MODELS = {"ember": "ember", "tvm-xgb": "xgb", "random": "random"}
_EXAMPLES = """examples:
  export EMBER_SERVICE_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')
  ember serve --workers 2 --rpc-tracker 127.0.0.1:9190
  ember service token create alice
  ember tune model.onnx --trials 256 --service http://127.0.0.1:8765
  ember compile model.onnx --service http://127.0.0.1:8765"""


def add_service_option(p: argparse.ArgumentParser) -> None:
    """`--service URL` for `ember tune` and `ember compile`."""
    p.add_argument(
        "--service",
        metavar="URL",
        help="a tuning service (`ember serve`): tune there / pull its best records "
        "(token: $EMBER_SERVICE_TOKEN)",
    )


def _worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tuning-records",
        metavar="DB",
        help="the database of records and jobs: a SQLite file or postgresql://... "
        "(default: $EMBER_TUNING_DB, else tuning.db in ember's cache dir)",
    )
    p.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on this tracker's devices")
    p.add_argument(
        "--lease", type=float, default=30.0, metavar="S", help="job lease in seconds (default 30)"
    )
    p.add_argument("--cost-model", choices=sorted(_COST_MODELS), default="ember")
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per-kernel run time limit"
    )


def add_service_commands(sub: Any) -> None:
    """Add `serve` and the `service` group to the `ember` parser's subcommands."""
    text = argparse.RawDescriptionHelpFormatter
    summary = "run the tuning service: HTTP API, job queue, workers, dashboard"
    p = sub.add_parser("serve", help=summary, description=f"{summary}\n\n{_EXAMPLES}",
                       formatter_class=text)  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes (default 1)"
    )
    p.add_argument("--max-upload-mb", type=int, default=64, metavar="MB", help="request body limit")
    _worker_options(p)
    p.set_defaults(handler=_serve)

    group = sub.add_parser("service", help="tuning-service tokens and stand-alone workers",
                           description=_EXAMPLES, formatter_class=text)  # fmt: skip
    commands = group.add_subparsers(dest="service_command", required=True, parser_class=type(group))
    token = commands.add_parser("token", help="named bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True,
                                          parser_class=type(group))  # fmt: skip
    p = token_commands.add_parser("create", help="make a token NAME and print it (only once)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--tuning-records", metavar="DB", help="the service's database")
    p.set_defaults(handler=_token_create)
    p = commands.add_parser("worker", help="run one worker on the service's database")
    _worker_options(p)
    p.set_defaults(handler=_worker)


def _database(url: str | None) -> str:
    from ember import config

    return url or config.tuning_db_path()


def _worker_config(args: argparse.Namespace) -> Any:
    from ember.autotune.service.worker import WorkerConfig

    return WorkerConfig(
        database=_database(args.tuning_records),
        rpc_tracker=args.rpc_tracker,
        lease_sec=args.lease,
        cost_model=_COST_MODELS[args.cost_model],
        timeout_sec=args.timeout,
    )


def _serve(args: argparse.Namespace) -> int:
    from ember import config
    from ember.autotune.service.app import ServiceConfig, serve
    from ember.autotune.service.queue import JobQueue
    from ember.autotune.service.supervisor import Supervisor

    database = _database(args.tuning_records)
    queue = JobQueue.open(database)
    named = queue.token_count()
    queue.close()
    if config.service_token() is None and not named:
        raise UsageError(
            "no token would be accepted: set EMBER_SERVICE_TOKEN or run "
            "`ember service token create NAME` first"
        )
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    argv = ["service", "worker", "--tuning-records", database, "--lease", str(args.lease),
            "--cost-model", args.cost_model, "--timeout", str(args.timeout)]  # fmt: skip
    if args.rpc_tracker:
        argv += ["--rpc-tracker", args.rpc_tracker]
    workers = Supervisor(args.workers, argv)
    workers.start()
    url = f"http://{args.host}:{args.port}"
    print(f"ember tuning service on {url} (dashboard {url}/, API docs {url}/docs), "
          f"{args.workers} workers, records in {database}", flush=True)  # fmt: skip
    try:
        serve(ServiceConfig(database, config.service_token(), args.max_upload_mb << 20),
              args.host, args.port)  # fmt: skip
    finally:
        workers.stop()
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from ember.autotune.service.auth import create_token
    from ember.autotune.service.queue import JobQueue

    queue = JobQueue.open(_database(args.tuning_records))
    try:
        token = create_token(queue, args.name)
    finally:
        queue.close()
    print(token)
    print(f"token {args.name!r} created; it is stored hashed and cannot be shown again",
          file=sys.stderr)  # fmt: skip
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ember.autotune.service.worker import main

    main(_worker_config(args))
    return 0


def _client(url: str) -> Any:
    from ember import config
    from ember.autotune.service.client import ServiceClient

    return ServiceClient(url, config.service_token())


def remote_tune(args: argparse.Namespace, bar: Any) -> int:
    """`ember tune MODEL --service URL`: submit, follow with `bar` (the local progress bar),
    then store the job's records in the local database."""
    from ember.autotune.database import TuningDatabase
    from ember.autotune.service.records_wire import add_entries, parse_entries
    from ember.codegen.target import resolve_target

    if args.rpc_tracker or args.plot or args.compare:
        raise UsageError(
            "with --service the service's workers measure (on their own --rpc-tracker) and "
            "draw the curves on its dashboard: drop --rpc-tracker/--plot/--compare"
        )
    target = resolve_target(args.target)
    with _client(args.service) as client:
        job = _submit(client, args, target)
        print(f"job {job['id']} on {args.service} (live: {args.service.rstrip('/')}/)")
        try:
            with bar as progress:
                job = client.wait(job["id"], progress.update)
        except KeyboardInterrupt:
            print(f"\njob {job['id']} keeps running on the service", file=sys.stderr)
            return 130
        if job["status"] != "done":
            raise ServiceError(f"job {job['id']} {job['status']}: {job['error'] or 'no reason'}")
        entries = parse_entries(client.job_entries(job["id"]))
    with TuningDatabase.open(args.tuning_records) as db:
        added = add_entries(db, entries)
        where = db.url
    best = [p["best_ms"] for p in job["curve"] if p["best_ms"] is not None]
    print(f"{job['measured']} trials on the service; best model latency "
          f"{f'{best[-1]:.4f} ms' if best else 'not measured'}")  # fmt: skip
    print(f"{added} new records in {where}; build with `ember compile MODEL --tuning-records "
          f"{where}` (or --service {args.service})")  # fmt: skip
    if args.log:
        Path(args.log).write_text(json.dumps(job, indent=1))
        print(f"wrote {args.log}")
    return 0


def _submit(client: Any, args: argparse.Namespace, target: dict[str, Any]) -> dict[str, Any]:
    """Upload a model file; for a `pkg.module:factory` model, its task list (extracted here)."""
    common = {"target": target, "trials": args.trials, "trials_per_task": args.trials_per_task,
              "rpc_key": args.rpc_key}  # fmt: skip
    path = Path(args.model)
    if path.suffix in (".onnx", ".pt2") and path.is_file():
        return client.submit_model(path, input_shapes=args.input_shapes, **common)
    from ember.autotune.tasks import extract_tasks
    from ember.model_files import load_model, parse_input_shapes
    from ember.passes import run_pipeline

    source = load_model(args.model, parse_input_shapes(args.input_shapes), {})
    graph, _ = run_pipeline(source.graph)
    return client.submit_tasks(extract_tasks(graph, target), **common)


def service_records(url: str, graph: Any, target: str, tuning_records: str | None) -> Any:
    """`ember compile --service URL`: pull the best records of the graph's kernels into the local
    database (the cache) and return it as `build`'s database; offline, the cache with a warning."""
    from ember.autotune.database import TuningDatabase
    from ember.autotune.records import schedule_database
    from ember.autotune.service.client import pull_best
    from ember.autotune.tasks import extract_tasks
    from ember.codegen.target import resolve_target

    spec = resolve_target(target)
    tasks = extract_tasks(graph, spec)
    hashes = [_hash(m) for t in tasks for m in (t.mod, t.symbolic) if m is not None]
    db = TuningDatabase.open(tuning_records)
    with _client(url) as client:
        added = pull_best(client, hashes, spec, db)
    if added is None:
        print(f"warning: the tuning service at {url} cannot be reached; using the records "
              f"cached in {db.url}", file=sys.stderr)  # fmt: skip
    else:
        print(f"{added} new records from {url} (cached in {db.url})")
    return schedule_database(db, spec)


def _hash(mod: Any) -> str:
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod))
