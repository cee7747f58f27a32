"""The contact suppression list: people nobody may contact, whatever their consent says.

Marketing or the data-protection officer drops CSV files into ``CRM_PLATFORM_HOME/suppression/``
with a column ``email`` or ``customer_id`` (and optionally ``reason``). The list keeps only a
salted SHA-256 of each normalized identifier, never the identifier itself, and resolves it to
today's customers (an e-mail through the golden records; every customer holding it). A row that is neither a valid e-mail nor
a customer id is rejected with its file, line and reason (its content is not copied).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from crm_platform.contracts.schemas import CUSTOMER_ID, EMAIL
from crm_platform.core.standardize import email_std
from crm_platform.core.privacy import hash_sql, identifier_hash

TABLE = "governance.contact_suppression"
REJECTS = "governance.suppression_rejects"


def read_files(folder: Path, salt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(entries, rejects) of every CSV in ``folder``."""
    entries, rejects = [], []
    for path in sorted(Path(folder).glob("*.csv")) if Path(folder).exists() else []:
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            rejects.append({"source_file": path.name, "source_line": None,
                            "reason": f"unreadable file: {type(e).__name__}: {str(e)[:200]}"})
            continue
        cols = {c.strip().lower(): c for c in df.columns}
        if "email" not in cols and "customer_id" not in cols:
            rejects.append({"source_file": path.name, "source_line": None,
                            "reason": f"no email or customer_id column (columns: {', '.join(map(str, df.columns))[:200]})"})
            continue
        for i, row in enumerate(df.itertuples(index=False), start=2):     # line 1 is the header
            rec = dict(zip(df.columns, row))
            reason = rec.get(cols["reason"], "") if "reason" in cols else ""
            email = email_std(rec.get(cols["email"], "")) if "email" in cols else None
            cid = (rec.get(cols["customer_id"], "") or "").strip() if "customer_id" in cols else ""
            if email and re.match(EMAIL, email):
                kind, value = "email", email
            elif cid and re.match(CUSTOMER_ID, cid):
                kind, value = "customer_id", cid
            else:
                rejects.append({"source_file": path.name, "source_line": i,
                                "reason": "neither a valid e-mail nor a customer id"})
                continue
            entries.append({"identifier_hash": identifier_hash(kind, value, salt), "identifier_type": kind,
                            "reason": reason.strip()[:200] or None, "source_file": path.name})
    cols_e = ["identifier_hash", "identifier_type", "reason", "source_file"]
    cols_r = ["source_file", "source_line", "reason"]
    return (pd.DataFrame(entries, columns=cols_e).drop_duplicates("identifier_hash"),
            pd.DataFrame(rejects, columns=cols_r))


def build(con, folder: Path, salt: str) -> dict:
    """Rebuild the list from the files, resolve it to customers; returns counts."""
    entries, rejects = read_files(folder, salt)
    con.execute("CREATE SCHEMA IF NOT EXISTS governance")
    con.register("_entries", entries)
    con.register("_rejects", rejects)
    con.execute(f"""CREATE OR REPLACE TABLE {TABLE} AS
        SELECT e.identifier_hash, e.identifier_type, e.reason::VARCHAR AS reason, e.source_file,
               coalesce(cm.customer_id, ci.customer_id) AS customer_id
        FROM _entries e
        LEFT JOIN (SELECT customer_id, {hash_sql('email', 'lower(trim(email))', salt)} AS h FROM core.customers
                   WHERE email IS NOT NULL) cm
               ON e.identifier_type = 'email' AND cm.h = e.identifier_hash
        LEFT JOIN (SELECT customer_id, {hash_sql('customer_id', 'customer_id', salt)} AS h FROM core.customers) ci
               ON e.identifier_type = 'customer_id' AND ci.h = e.identifier_hash""")
    con.execute(f"CREATE OR REPLACE TABLE {REJECTS} AS SELECT source_file::VARCHAR AS source_file, "
                f"source_line::BIGINT AS source_line, reason::VARCHAR AS reason FROM _rejects")
    con.unregister("_entries")
    con.unregister("_rejects")
    n, resolved = con.execute(f"SELECT count(*), count(customer_id) FROM {TABLE}").fetchall()[0]
    return {"entries": int(n), "resolved": int(resolved), "rejected": len(rejects)}
