"""Keeping erased people out at ingestion: which rows of a dataset name a person on the erasure
list, over the salted hashes the list keeps (the list itself: crm_platform.governance.erasure)."""
from __future__ import annotations

from crm_platform.core.privacy import hash_sql
from crm_platform.contracts.entities import entity
from crm_platform.ingest.sources import Dataset


def match_sql(ds: Dataset, hashes: str, salt: str) -> str | None:
    """A predicate over the canonical columns of ``ds`` true for the rows of a person whose salted
    identifier hashes are in the one-column relation ``hashes`` (None: the dataset has no person)."""
    cols = set(entity(ds.entity).column_names)
    keys = []
    if ds.entity == "contacts":
        keys += [("contact_key", f"'{ds.system}:' || source_record_id"), ("email", "lower(trim(email))")]
    elif entity(ds.entity).contact_ref:
        keys.append(("contact_key", f"'{ds.contact_system}:' || {entity(ds.entity).contact_ref}"))
    for kind in ("shop_customer_no", "visitor_id", "order_id"):
        if kind in cols:
            keys.append((kind, f"trim({kind})"))
    if "visitor_id" in cols and entity(ds.entity).contact_ref:
        # a cookie's anonymous events only: its logged-in events belong to whoever logged in
        ref = entity(ds.entity).contact_ref
        keys = [(k, f"CASE WHEN {ref} IS NULL THEN {e} END" if k == "visitor_id" else e) for k, e in keys]
    if ds.entity == "orders" or (ds.entity == "contacts" and ds.system == "shop"):
        ref = "customer_ref" if ds.entity == "orders" else "source_record_id"
        keys.append(("shop_customer_no", ref))
    if not keys:
        return None
    return "(" + " OR ".join(f"{hash_sql(kind, expr, salt)} IN (SELECT * FROM {hashes})" for kind, expr in keys) + ")"
