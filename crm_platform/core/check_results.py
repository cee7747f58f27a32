"""The platform's own record of every check evaluation: which check of which table passed or failed,
when, in which run, with what it said.

The Dagster run history shows the same evaluations in the UI; this record is what the platform
itself reads back - the dashboard's data-quality section, the data-quality alerts, the drift
sensor and the incremental validation of a table since its last passed check - so none of them
depends on how a Dagster version stores its event log. A SQLite file beside the warehouse: one
writer at a time, readers never blocked (WAL), and it stays readable while a run holds the
DuckDB file.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

FILE = "check_results.sqlite"
# a table's history is kept this deep per check: enough to look back, small for ever
KEEP = 50

_DDL = """CREATE TABLE IF NOT EXISTS check_results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    asset TEXT NOT NULL, check_name TEXT NOT NULL, run_id TEXT NOT NULL,
    passed INTEGER NOT NULL, severity TEXT NOT NULL, description TEXT NOT NULL,
    metadata TEXT NOT NULL, evaluated_at TEXT NOT NULL)"""
_INDEX = "CREATE INDEX IF NOT EXISTS check_results_key ON check_results (asset, check_name, seq)"


@dataclass(frozen=True)
class Evaluation:
    asset: str           # the asset key as a path, e.g. "staging/contacts"
    check: str
    run_id: str
    passed: bool
    severity: str        # ERROR or WARN
    description: str
    metadata: dict       # plain values only (numbers, text)
    evaluated_at: str
    seq: int = 0         # the order evaluations were recorded in: a newer one has a higher number


def path_beside(warehouse: str | Path) -> Path:
    """The record of the checks of the warehouse file ``warehouse`` (an in-memory warehouse has none)."""
    return Path(warehouse).with_name(FILE)


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=60)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(_DDL)
    con.execute(_INDEX)
    return con


def record(path: Path, evaluations: list[Evaluation]) -> None:
    """Add ``evaluations``; older ones of the same check beyond ``KEEP`` are dropped."""
    if not evaluations:
        return
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with closing(_open(path)) as con, con:
        con.executemany(
            "INSERT INTO check_results (asset, check_name, run_id, passed, severity, description, metadata, "
            "evaluated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.asset, e.check, e.run_id, int(e.passed), e.severity, e.description,
              json.dumps(e.metadata, default=str, sort_keys=True), e.evaluated_at or now) for e in evaluations])
        for e in {(e.asset, e.check) for e in evaluations}:
            con.execute("DELETE FROM check_results WHERE asset = ? AND check_name = ? AND seq NOT IN (SELECT seq "
                        "FROM check_results WHERE asset = ? AND check_name = ? ORDER BY seq DESC LIMIT ?)",
                        [*e, *e, KEEP])


def latest(path: Path, checks: set[tuple[str, str]] | None = None) -> list[Evaluation]:
    """The latest evaluation of every check recorded (of ``checks`` only, (asset, check) pairs, when
    given), sorted by asset and check. Nothing recorded yet: an empty list."""
    if not path.exists():
        return []
    with closing(_open(path)) as con:
        rows = con.execute(
            "SELECT asset, check_name, run_id, passed, severity, description, metadata, evaluated_at, seq "
            "FROM check_results WHERE seq IN (SELECT max(seq) FROM check_results GROUP BY asset, check_name) "
            "ORDER BY asset, check_name").fetchall()
    out = [Evaluation(a, c, r, bool(p), s, d, json.loads(m), t, q) for a, c, r, p, s, d, m, t, q in rows]
    return [e for e in out if checks is None or (e.asset, e.check) in checks]


def last(path: Path, asset: str, check: str) -> Evaluation | None:
    """The latest evaluation of one check, None when it was never recorded."""
    found = latest(path, {(asset, check)})
    return found[0] if found else None
