"""`ember db stats|export|import|merge`: the tuning database from the command line.

Kept beside cli.py (which is at its line budget): the parser of the `db` group and its printing;
everything else is one call into `ember.autotune.TuningDatabase`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ember.errors import UsageError

__all__ = ["add_db_commands"]

_EXAMPLES = """examples:
  ember db stats
  ember db export records.jsonl --tuning-records team.db
  ember db import records.jsonl
  ember db merge postgresql://tuner@dbhost/ember --tuning-records local.db"""


def add_db_commands(sub: Any) -> None:
    """Add the `db` command group to the `ember` parser's subcommands."""
    group = sub.add_parser(
        "db",
        help="show and move tuning records: stats, export, import, merge",
        description="show and move tuning records: stats, export, import, merge\n\n" + _EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = group.add_subparsers(dest="db_command", required=True, parser_class=type(group))
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--tuning-records",
        metavar="DB",
        help="a SQLite file, sqlite:///path or postgresql://... "
        "(default: $EMBER_TUNING_DB, else tuning.db in ember's cache dir)",
    )
    p = commands.add_parser(
        "stats", parents=[where], help="count workloads and records per target and versions"
    )
    p.set_defaults(handler=_stats)
    p = commands.add_parser(
        "export", parents=[where], help="write every workload and record to a JSON Lines file"
    )
    p.add_argument("file", metavar="FILE.jsonl")
    p.set_defaults(handler=_export)
    p = commands.add_parser(
        "import", parents=[where], help="add the records of an exported file (skips duplicates)"
    )
    p.add_argument("file", metavar="FILE.jsonl")
    p.set_defaults(handler=_import)
    p = commands.add_parser(
        "merge", parents=[where], help="copy every record of another database into this one"
    )
    p.add_argument("source", metavar="SOURCE_DB", help="a SQLite file or database URL")
    p.set_defaults(handler=_merge)


def _open(args: argparse.Namespace) -> Any:
    from ember.autotune import TuningDatabase

    return TuningDatabase.open(args.tuning_records)


def _stats(args: argparse.Namespace) -> int:
    with _open(args) as db:
        stats = db.stats()
    print(
        f"tuning database {stats.url} ({stats.backend}): "
        f"{stats.workloads} workloads, {stats.records} records"
    )
    if stats.targets:
        print(f"{'workloads':>9} {'records':>8} {'valid':>8}  {'ember':<8} {'tvm':<14} target")
    for t in stats.targets:
        print(
            f"{t.workloads:>9} {t.records:>8} {t.valid_records:>8}  "
            f"{t.versions['ember']:<8} {t.versions['tvm']:<14} {json.dumps(t.target)}"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open(args) as db:
        written = db.export(args.file)
        print(f"wrote {written} records from {db.url} to {args.file}")
    return 0


def _import(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise UsageError(f"{args.file}: no such file (write one with `ember db export`)")
    with _open(args) as db:
        added = db.import_(args.file)
        print(f"imported {added} new records from {args.file} into {db.url}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from ember.autotune import TuningDatabase

    source = args.source
    if "://" not in source and not Path(source).is_file():
        raise UsageError(f"{source}: no such database file")
    with _open(args) as db, TuningDatabase.open(source) as other:
        added = db.merge(other)
        print(f"merged {added} new records from {other.url} into {db.url}")
    return 0
