"""The event log storage of the project's Dagster instance: Dagster's SQLite storage whose pool
slots are claimed and freed under one lock across processes.

Dagster's SQL storage claims a slot of a pool by reading a free slot row and then writing the run
into it, in two statements. Postgres and MySQL lock the row in between (``SELECT ... FOR UPDATE``);
SQLite ignores that clause, so two runs that claim at the same instant can both read the one free
slot of the ``duckdb`` pool and both go on: two writers on one DuckDB file, which the pool is
there to prevent. Here every claim and every release runs under an exclusive ``flock`` on a file
beside the index database, so the read and the write are one step for every process on the
machine (the SQLite files can only be shared by processes of one machine anyway).
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

LOCK_FILE = "concurrency.lock"


@contextmanager
def _exclusive(path: str) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SerializedSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with pool slots claimed and freed one process at a time.

    Configured in the project's ``dagster.yaml`` (``event_log_storage``) with the same
    ``base_dir`` as Dagster's default, so an instance keeps its run history when it switches."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "SerializedSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _locked(self):
        return _exclusive(os.path.join(self._base_dir, LOCK_FILE))

    def claim_concurrency_slot(self, concurrency_key, run_id, step_key, priority=None):
        with self._locked():
            return super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)

    def free_concurrency_slots_for_run(self, run_id):
        with self._locked():
            return super().free_concurrency_slots_for_run(run_id)

    def free_concurrency_slot_for_step(self, run_id, step_key):
        with self._locked():
            return super().free_concurrency_slot_for_step(run_id, step_key)
