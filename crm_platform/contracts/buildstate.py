"""What an incrementally built core table reflects: one row per building step in
``core.build_state`` - the fingerprint of its rules or query, the newest resolution
(``identity.crosswalk.resolved_at``) and the newest staged load (``_loaded_at``) it has taken in.

A step compares its fingerprint with the one held to decide whether it may build incrementally,
and takes in only what was resolved or loaded after the times held.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from crm_platform.core.warehouse import table_exists

TABLE = "core.build_state"


def fingerprint(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def held(con, step: str) -> dict | None:
    """The state of ``step``, or None when it has none."""
    if not table_exists(con, TABLE):
        return None
    row = con.execute(f"SELECT fingerprint, resolved_through, loaded_through, built_at FROM {TABLE} WHERE step = ?",
                      [step]).fetchall()
    return dict(zip(("fingerprint", "resolved_through", "loaded_through", "built_at"), row[0])) if row else None


def record(con, step: str, fingerprint: str, resolved_through: datetime | None,
           loaded_through: datetime | None = None) -> None:
    """Replace the state of ``step`` (inside the caller's transaction) and validate the table."""
    from crm_platform.contracts.schemas import BuildState

    con.execute("CREATE SCHEMA IF NOT EXISTS core")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (step VARCHAR, fingerprint VARCHAR,
        resolved_through TIMESTAMP, loaded_through TIMESTAMP, built_at TIMESTAMP)""")
    con.execute(f"DELETE FROM {TABLE} WHERE step = ?", [step])
    con.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                [step, fingerprint, resolved_through, loaded_through])
    BuildState.validate(con.execute(f"SELECT * FROM {TABLE}").df())
