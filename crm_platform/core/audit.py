"""``governance.audit_log``: who did what to personal data or to the models, when, with what outcome.

Actions: ``erasure``, ``export``, ``review_decision``, ``model_promotion``. A row never holds
personal data: the subject is a request id, a hashed identifier, a pair of contact keys' hash or
a model version, and ``details`` is a JSON document of counts and names of tables. Rows are only
ever added; an event recorded before (same action, subject and outcome) is not recorded again, so
re-applying the same review decision on every run leaves one row.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime, timezone

TABLE = "governance.audit_log"
ACTIONS = ("erasure", "export", "review_decision", "model_promotion")
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    logged_at TIMESTAMP NOT NULL, action VARCHAR NOT NULL, actor VARCHAR NOT NULL, subject VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL, details VARCHAR)"""


def default_actor() -> str:
    """The person at the terminal (``CRM_PLATFORM_ACTOR`` overrides the login name)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return os.environ.get("CRM_PLATFORM_ACTOR") or f"cli:{user}"


def ensure(con) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS governance")
    con.execute(DDL)


def record(con, action: str, actor: str, subject: str, outcome: str, details: dict | None = None,
           once: bool = False) -> bool:
    """Add one audit row (with ``once``, only if the same action, subject and outcome is not there
    yet); returns whether a row was added."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; known: {', '.join(ACTIONS)}")
    ensure(con)
    if once and con.execute(f"SELECT count(*) FROM {TABLE} WHERE action = ? AND subject = ? AND outcome = ?",
                            [action, subject, outcome]).fetchall()[0][0]:
        return False
    con.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                [datetime.now(timezone.utc).replace(tzinfo=None), action, actor, subject, outcome,
                 json.dumps(details or {}, default=str, sort_keys=True)])
    return True


def record_many(con, rows: list[dict], once: bool = True) -> int:
    """Several rows (keys: action, actor, subject, outcome, details); returns how many were added."""
    return sum(record(con, r["action"], r["actor"], r["subject"], r["outcome"], r.get("details"), once=once)
               for r in rows)
