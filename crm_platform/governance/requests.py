"""Subject requests dropped as files into ``CRM_PLATFORM_HOME/requests/``.

One JSON object per file: ``{"type": "erase" | "export", "email": "..."}`` or with
``"customer_id"`` instead of ``"email"``, optionally ``"requested_by"``. An e-mail address several
customers hold is refused unless ``"customer_id"`` beside it names the one meant or
``"all_matching": true`` takes them all. Each file is registered
once in ``governance.requests`` (its id is the hash of its content, so the same request dropped
twice is one request) as ``pending``, or as ``invalid`` with the reason; the governance steps
(erasure, export) take the pending ones from there.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from crm_platform.contracts.schemas import CUSTOMER_ID, EMAIL
from crm_platform.core.standardize import email_std

TABLE = "governance.requests"
TYPES = ("erase", "export")
COLUMNS = ["request_id", "source_file", "request_type", "identifier_type", "identifier", "requested_by",
           "received_at", "status", "reason", "scope"]
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id VARCHAR NOT NULL, source_file VARCHAR NOT NULL, request_type VARCHAR, identifier_type VARCHAR,
    identifier VARCHAR, requested_by VARCHAR, received_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL,
    reason VARCHAR, scope VARCHAR);
ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS scope VARCHAR"""
# scope of an e-mail request several customers may hold: NULL (one customer only), 'all_matching',
# or 'customer:<id>' (blanked with the identifier once carried out)


def scope_args(scope: str | None) -> dict:
    """The customer_id / all_matching arguments of erase and export for a request's scope."""
    if scope == "all_matching":
        return {"all_matching": True}
    if scope and scope.startswith("customer:"):
        return {"customer_id": scope.split(":", 1)[1]}
    return {}


def request_files(folder: Path) -> list[Path]:
    """The request files of a folder (``*.json``, not hidden, not partial)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith(".")) \
        if folder.exists() else []


def parse(path: Path) -> dict:
    """One request file as a row of ``governance.requests`` (``invalid`` with a reason if bad)."""
    data = path.read_bytes()
    row = dict.fromkeys(COLUMNS)
    row.update(request_id=hashlib.sha256(data).hexdigest()[:24], source_file=path.name,
               received_at=datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(tzinfo=None),
               status="pending")

    def invalid(reason: str) -> dict:
        row.update(status="invalid", reason=reason, identifier=None)
        return row

    try:
        req = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return invalid(f"not a UTF-8 JSON document: {str(e)[:120]}")
    if not isinstance(req, dict):
        return invalid("not a JSON object")
    row["request_type"] = str(req.get("type", "")).strip().lower() or None
    row["requested_by"] = str(req["requested_by"])[:120] if req.get("requested_by") else None
    if row["request_type"] not in TYPES:
        return invalid(f"type must be one of {', '.join(TYPES)}")
    email, cid, every = req.get("email"), req.get("customer_id"), req.get("all_matching", False)
    if not isinstance(every, bool):
        return invalid("all_matching must be true or false")
    if cid and not re.match(CUSTOMER_ID, str(cid).strip()):
        return invalid("customer_id is not a customer id (C + 9 digits)")
    if email and cid and every:
        return invalid("give customer_id (the one customer meant) or all_matching, not both")
    if email:
        email = email_std(str(email))
        if not email or not re.match(EMAIL, email):
            return invalid("email is not a valid e-mail address")
        row.update(identifier_type="email", identifier=email,
                   scope=f"customer:{str(cid).strip()}" if cid else "all_matching" if every else None)
    elif cid:
        row.update(identifier_type="customer_id", identifier=str(cid).strip())
    else:
        return invalid("no email or customer_id")
    return row


def register(con, folder: Path) -> dict:
    """Add the request files not registered yet; returns counts."""
    con.execute("CREATE SCHEMA IF NOT EXISTS governance")
    con.execute(DDL)
    known = {r[0] for r in con.execute(f"SELECT request_id FROM {TABLE}").fetchall()}
    rows, seen = [], set()
    for path in request_files(folder):
        row = parse(path)
        if row["request_id"] not in known and row["request_id"] not in seen:
            rows.append(row)
            seen.add(row["request_id"])
    if rows:
        con.register("_requests", pd.DataFrame(rows, columns=COLUMNS))
        con.execute(f"INSERT INTO {TABLE} BY NAME SELECT * FROM _requests")
        con.unregister("_requests")
    return {"new": len(rows), "new_invalid": sum(r["status"] == "invalid" for r in rows),
            "pending": con.execute(f"SELECT count(*) FROM {TABLE} WHERE status = 'pending'").fetchall()[0][0]}


def record(con, request_id: str, request_type: str, identifier_type: str, status: str, reason: str | None,
           requested_by: str | None, source_file: str = "cli") -> None:
    """A request made on the command line, registered as carried out (without the identifier)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS governance")
    con.execute(DDL)
    con.execute(f"INSERT INTO {TABLE} BY NAME SELECT ? AS request_id, ? AS source_file, ? AS request_type, "
                "? AS identifier_type, NULL AS identifier, ? AS requested_by, now()::TIMESTAMP AS received_at, "
                "? AS status, ? AS reason", [request_id, source_file, request_type, identifier_type, requested_by,
                                             status, reason])


def carry_out(connect, paths, cfg, compact: bool = True) -> list[dict]:
    """Carry out every pending request of ``governance.requests``, oldest first: an erasure (with
    its receipt) or an export. Each ends ``done`` (or ``failed`` with the reason), its identifier
    blanked and its file removed from the requests folder (it names the person)."""
    from crm_platform.governance import erasure, export
    from crm_platform.governance.subject import AmbiguousSubject, SubjectNotFound

    con = connect()
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS governance")
        con.execute(DDL)
        pending = con.execute(f"SELECT request_id, request_type, identifier_type, identifier, requested_by, source_file, "
                              f"scope FROM {TABLE} WHERE status = 'pending' ORDER BY received_at, request_id").fetchall()
    finally:
        con.close()
    results = []
    for rid, rtype, itype, ident, by, src, scope in pending:
        actor = f"request:{by}" if by else f"request file {src}"
        result = {"request_id": rid, "request_type": rtype, "status": "done", "verified": None,
                  "rows_removed": None, "reason": None}
        try:
            if rtype == "erase":
                receipt = erasure.erase(connect, paths, cfg, itype, ident, request_id=rid, actor=actor,
                                        compact_warehouse=compact, **scope_args(scope))
                passed = receipt["verification"]["passed"]
                result.update(verified=passed, rows_removed=receipt["rows_removed_total"],
                              status="done" if passed else "failed",
                              reason=f"receipt governance/receipts/{rid}.json"
                                     + ("" if passed else f": {receipt['verification']['occurrences']} trace(s) left"))
            else:
                con = connect()
                try:
                    path = export.export(con, paths, cfg, itype, ident, request_id=rid, actor=actor,
                                         **scope_args(scope))
                finally:
                    con.close()
                result["reason"] = f"export {path.relative_to(paths.home).as_posix()}"
        except AmbiguousSubject as e:
            result.update(status="refused", reason=f"{e} (nothing was done; send the request again)")
        except SubjectNotFound as e:
            result["reason"] = f"no data held: {e}"
        except Exception as e:  # noqa: BLE001 - recorded as failed with the reason, the others go on
            # the identifier stays so the request can be retried (set it back to pending)
            result.update(status="failed", reason=f"{type(e).__name__}: {str(e)[:300]}", error=True)
        finished = not result.pop("error", False)
        con = connect()
        try:
            con.execute(f"UPDATE {TABLE} SET status = ?, reason = ?, identifier = CASE WHEN ? THEN NULL "
                        "ELSE identifier END, scope = CASE WHEN ? THEN NULL ELSE scope END WHERE request_id = ?",
                        [result["status"], result["reason"], finished, finished, rid])
        finally:
            con.close()
        for path in request_files(paths.requests) if finished else []:
            if hashlib.sha256(path.read_bytes()).hexdigest()[:24] == rid:
                path.unlink()
        results.append(result)
    return results
