"""Autotuning: MetaSchedule tasks and measurement, and the tuning database.

Only the database is imported here (it needs no TVM); `ember.autotune.ms_database` adapts it to
MetaSchedule and imports TVM.
"""

from __future__ import annotations

from ember.autotune.database import (
    DatabaseStats,
    Record,
    TargetStats,
    TuningDatabase,
    canonical_target,
    current_versions,
)

__all__ = [
    "DatabaseStats",
    "Record",
    "TargetStats",
    "TuningDatabase",
    "canonical_target",
    "current_versions",
]
