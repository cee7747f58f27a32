"""Which columns hold personal data, and keeping it out of places it does not belong.

Two classes of column:

* **direct** PII names or reaches a person by itself: names, e-mail, phone, address, birth date,
  free text a person wrote, the record as delivered;
* **identifier** columns are pseudonymous keys (customer id, contact key, source record ids,
  visitor and session cookies, order or ticket ids): harmless alone, personal once joined.

Layers ``raw``, ``staging``, ``identity`` and ``core`` may hold both; the analytical layers
(``features``, ``ml``, ``marts``, ``alerts``) carry identifiers only - never direct PII (the
``no_direct_pii`` checks). Metadata shown in the orchestrator (previews, check examples) is kept
forever in its run history, which an erasure does not rewrite, so it carries neither:
:func:`redact` hides both kinds of column.
"""

from __future__ import annotations

import re

import pandas as pd

from crm_platform.contracts.entities import ENTITIES
from crm_platform.core.privacy import EMAIL_RE, PHONE_RE

# direct PII: the entity model's ``pii`` columns plus their standardized and derived forms
_DIRECT_BASE = {c.name for e in ENTITIES.values() for c in e.columns if c.pii} | {
    "email_std", "email_local", "email_domain", "email_personal", "email_local_personal", "phone_e164",
    "first_name_std", "last_name_std", "first_name_key", "last_name_key", "first_name_forms", "name_pair",
    "street_std", "city_std", "city_key", "comment", "record", "identifier", "company"}
DIRECT = frozenset(_DIRECT_BASE | {f"{side}_{c}" for side in ("left", "right") for c in _DIRECT_BASE})
IDENTIFIER = frozenset({
    "customer_id", "contact_key", "source_record_id", "source_contact_key", "left_id", "right_id",
    "old_customer_id", "new_customer_id", "retired_into", "shop_customer_no", "shop_account",
    "visitor_id", "session_id", "customer_ref", "subscriber_ref", "requester_ref", "respondent_ref",
    "contact_ref", "order_id", "ticket_id", "lead_id", "response_id", "event_id", "evidence", "alert_id"})
# columns personal in one table only (a provenance value is the golden field itself)
BY_TABLE = {"core.customer_field_provenance": ("value",), "raw.quarantine_rows": ("reason",)}
ANALYTICAL_LAYERS = ("features", "ml", "marts", "alerts")


def kind(column: str) -> str | None:
    """``direct``, ``identifier`` or None for a column name."""
    c = column.lower()
    if c in DIRECT:
        return "direct"
    if c in IDENTIFIER:
        return "identifier"
    return None


def column_tags(column: str) -> dict[str, str]:
    """Tags for a column in the Dagster column schema (``pii: direct | identifier``)."""
    k = kind(column)
    return {"pii": k} if k else {}


def direct_columns(columns) -> list[str]:
    return [c for c in columns if kind(c) == "direct"]


def redact(df: pd.DataFrame, table: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``df`` without its personal columns (direct and identifier; of ``table`` if given), and the
    names hidden."""
    extra = BY_TABLE.get(table or "", ())
    hidden = [c for c in df.columns if kind(str(c)) or c in extra]
    return df.drop(columns=hidden), hidden


def mask_text(text: str | None) -> str | None:
    """A message with e-mail addresses and phone numbers replaced by placeholders."""
    if text is None:
        return None
    return re.sub(PHONE_RE, "<phone>", re.sub(EMAIL_RE, "<email>", str(text)))


def content_violations_sql(table: str, text_columns: list[str]) -> str:
    """SQL counting, per text column of ``table``, values that look like an e-mail address or a
    phone number (one row per column: column, rows, example-free)."""
    # an identifier column (order_id) of digits and dashes is a record number, not a phone number
    # (a plain order log's "01234-5678"); an e-mail address is personal data wherever it stands
    parts = [f"SELECT '{c}' AS column_name, count(*) AS rows FROM {table} "
             f"WHERE regexp_matches(\"{c}\"::VARCHAR, '{EMAIL_RE}')"
             + ("" if c.endswith("_id") else f" OR regexp_matches(\"{c}\"::VARCHAR, '{PHONE_RE}')")
             for c in text_columns]
    return " UNION ALL ".join(parts) if parts else "SELECT NULL::VARCHAR AS column_name, 0 AS rows WHERE false"
