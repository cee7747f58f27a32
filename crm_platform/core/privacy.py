"""Personal data at rest: salted hashes of identifiers, and the patterns of personal content.

A list that must remember a person without holding their data (the contact suppression list, the
erasure list) keeps ``identifier_hash`` of each normalized identifier; ``hash_sql`` is the same
hash in SQL, so ingestion, alerts and governance compare hashes alike.
"""
from __future__ import annotations

import hashlib


def identifier_hash(kind: str, value: str, salt: str) -> str:
    """The salted SHA-256 of an already normalized identifier of one kind (e-mail, contact key, ...)."""
    return hashlib.sha256(f"{salt}|{kind}|{value}".encode()).hexdigest()


def hash_sql(kind: str, expr: str, salt: str) -> str:
    """The same hash in DuckDB SQL, of an already normalized identifier."""
    return f"sha256('{salt}|{kind}|' || {expr})"


# content that is personal whatever the column is called
EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PHONE_RE = r"\+[1-9][0-9]{0,3}[ /-]?[0-9]{2,5}[ /-]?[0-9]{3,10}\b|\b0[1-9][0-9]{1,4}[ /-]?[0-9]{4,9}\b"
