"""Tuning records as `codegen.build` takes them: a MetaSchedule Database bound to one target."""

from __future__ import annotations

import os
from typing import Any

from ember.codegen.target import resolve_target

__all__ = ["schedule_database"]


def schedule_database(records: Any, target: str | dict[str, Any]) -> Any:
    """A MetaSchedule Database of `records` for `target`.

    `records` is a database path or URL (`ember tune --tuning-records`), an open `TuningDatabase`,
    or a MetaSchedule Database (returned as it is).
    """
    from ember.autotune.database import TuningDatabase
    from ember.autotune.ms_database import MetaScheduleDatabase

    if isinstance(records, str | os.PathLike):
        records = TuningDatabase.open(records)
    if isinstance(records, TuningDatabase):
        return MetaScheduleDatabase(records, resolve_target(target))
    return records
