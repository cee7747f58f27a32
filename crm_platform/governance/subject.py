"""Finding everything held about one person (the data subject of an erasure or export request).

A request names a person by e-mail or customer id. :func:`resolve` follows the identity graph from
there: every customer id (an e-mail held by several customers reaches them all; a retired id
reaches the customer it was merged into), every contact record of those customers in every source
system (the superseded versions in the raw layer too), and the keys their activity carries: shop
numbers, web visitor cookies, order ids. :func:`match_sql` turns those keys into one predicate per
source dataset, used alike to find a person's raw rows (export, erasure) and to keep an erased
person out at ingestion (over salted hashes, see crm_platform.governance.erasure).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from crm_platform import warehouse
from crm_platform.alerts.suppression import hash_sql, identifier_hash
from crm_platform.model import entity
from crm_platform.sources import Dataset, SourceConfig
from crm_platform.standardize import email_std


class SubjectNotFound(LookupError):
    """Nothing in the warehouse belongs to the identifier given."""


# identifier kinds kept (hashed) on the erasure list, and the canonical column each is read from
KINDS = ("email", "contact_key", "shop_customer_no", "visitor_id", "order_id")


@dataclass
class Subject:
    identifier_type: str
    identifier: str
    customer_ids: set[str] = field(default_factory=set)
    contact_keys: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)          # normalized, held by no other customer
    shared_emails: int = 0                                  # held by another customer too: kept
    phones: set[str] = field(default_factory=set)           # as delivered and E.164, not shared
    shop_numbers: set[str] = field(default_factory=set)
    visitor_ids: set[str] = field(default_factory=set)
    order_ids: set[str] = field(default_factory=set)
    other_ids: set[str] = field(default_factory=set)        # ticket, lead, response ids
    alert_ids: set[str] = field(default_factory=set)
    records_by_dataset: dict[str, int] = field(default_factory=dict)

    def identifiers(self) -> list[tuple[str, str]]:
        """(kind, value) pairs for the erasure list."""
        out = [("email", e) for e in self.emails] + [("contact_key", k) for k in self.contact_keys]
        out += [("shop_customer_no", n) for n in self.shop_numbers] + [("visitor_id", v) for v in self.visitor_ids]
        out += [("order_id", o) for o in self.order_ids]
        return sorted(set(out))

    def hashes(self, salt: str) -> list[tuple[str, str]]:
        return [(identifier_hash(k, v, salt), k) for k, v in self.identifiers()]

    def tokens(self) -> list[str]:
        """Strings whose presence anywhere means a trace of the person: every id and key, the
        e-mail addresses and phone numbers no one else holds, the alert ids."""
        keys = {k.split(":", 1)[1] for k in self.contact_keys}
        found = (self.customer_ids | self.contact_keys | keys | self.emails | self.phones | self.shop_numbers
                 | self.visitor_ids | self.order_ids | self.other_ids | self.alert_ids)
        return sorted({t for t in found if t and len(t) >= 5}, key=lambda t: (-len(t), t))


def _q(values) -> str:
    vals = sorted({str(v) for v in values if v is not None})
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in vals) + ")" if vals else "(NULL)"


def register_hashes(con, name: str, subject: "Subject", salt: str) -> list[tuple[str, str]]:
    """The person's salted identifier hashes as the one-column temp table ``name`` (for
    :func:`match_sql`); returns the (hash, kind) pairs."""
    hashes = subject.hashes(salt)
    con.register(f"{name}_df", pd.DataFrame({"h": [h for h, _ in hashes]}, dtype=str))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT h FROM {name}_df")
    con.unregister(f"{name}_df")
    return hashes


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


def resolve(con, cfg: SourceConfig, identifier_type: str, identifier: str) -> Subject:
    """Everything that identifies the person; raises SubjectNotFound when nothing does."""
    if identifier_type == "email":
        identifier = email_std(identifier) or ""
    s = Subject(identifier_type, identifier)
    have = lambda t: warehouse.table_exists(con, t)  # noqa: E731
    if identifier_type == "email":
        if have("identity.records") and have("identity.crosswalk"):
            s.customer_ids |= {r[0] for r in con.execute(
                "SELECT x.customer_id FROM identity.records r JOIN identity.crosswalk x USING (contact_key) "
                "WHERE r.email_std = ?", [identifier]).fetchall()}
        if have("core.customers"):
            s.customer_ids |= {r[0] for r in con.execute(
                "SELECT customer_id FROM core.customers WHERE lower(trim(email)) = ?", [identifier]).fetchall()}
    elif identifier_type == "customer_id":
        cid = identifier
        if have("identity.id_registry"):
            for _ in range(20):     # a retired id leads to the customer it was merged into
                row = con.execute("SELECT status, retired_into FROM identity.id_registry WHERE customer_id = ?",
                                  [cid]).fetchall()
                if not row or row[0][0] != "retired" or not row[0][1]:
                    break
                cid = row[0][1]
        s.customer_ids.add(cid)
    else:
        raise ValueError(f"identifier type must be email or customer_id, not {identifier_type!r}")

    records = []
    if have("identity.crosswalk") and s.customer_ids:
        records = con.execute(
            "SELECT x.contact_key, r.source_system, r.source_record_id, r.email_std, r.phone, r.phone_e164, "
            f"r.shop_customer_no, r.shop_account FROM identity.crosswalk x JOIN identity.records r USING (contact_key) "
            f"WHERE x.customer_id IN {_q(s.customer_ids)}").fetchall()
    if identifier_type == "email" and have("staging.contacts"):
        records += con.execute(
            "SELECT contact_key, source_system, source_record_id, email_std, phone, phone_e164, shop_customer_no, "
            "NULL FROM staging.contacts WHERE email_std = ?", [identifier]).fetchall()
    if identifier_type == "email":
        s.emails.add(identifier)
    for key, system, rid, email, phone, e164, shop_no, shop_acct in records:
        s.contact_keys.add(key)
        s.emails |= {email} - {None}
        s.phones |= {phone, e164} - {None}
        s.shop_numbers |= {shop_no, shop_acct} - {None}
        if system == "shop":
            s.shop_numbers.add(rid)
    # superseded deliveries of the same records (older file versions) and records never staged
    for ds in cfg.by_entity("contacts"):
        table = f"raw.{ds.key}"
        if not have(table):
            continue
        ids = {k.split(":", 1)[1] for k in s.contact_keys if k.startswith(ds.system + ":")}
        for rid, email, phone, shop_no in con.execute(
                f"SELECT DISTINCT source_record_id, lower(trim(email)), phone, shop_customer_no FROM {table} "
                f"WHERE source_record_id IN {_q(ids)} OR lower(trim(email)) IN {_q(s.emails)}").fetchall():
            s.contact_keys.add(f"{ds.system}:{rid}")
            s.emails |= {email} - {None}
            s.phones |= {phone} - {None}
            s.shop_numbers |= {shop_no} - {None}
            if ds.system == "shop":
                s.shop_numbers.add(rid)
    if not s.customer_ids and not s.contact_keys:
        raise SubjectNotFound(f"no customer or source record holds this {identifier_type}")
    _drop_shared(con, s, have)
    _activity_keys(con, cfg, s, have)
    if have("alerts.customer_alerts"):
        s.alert_ids = {r[0] for r in con.execute(
            f"SELECT alert_id FROM alerts.customer_alerts WHERE customer_id IN {_q(s.customer_ids)}").fetchall()}
    return s


def _drop_shared(con, s: Subject, have) -> None:
    """E-mail addresses and phone numbers another customer holds too stay theirs: they are neither
    scanned for nor put on the erasure list."""
    if not have("identity.records"):
        return
    others = ("FROM identity.records r LEFT JOIN identity.crosswalk x USING (contact_key) "
              f"WHERE r.contact_key NOT IN {_q(s.contact_keys)}")
    shared_e = {r[0] for r in con.execute(f"SELECT DISTINCT r.email_std {others} AND r.email_std IN {_q(s.emails)}").fetchall()}
    shared_p = {p for row in con.execute(
        f"SELECT DISTINCT r.phone, r.phone_e164 {others} AND (r.phone IN {_q(s.phones)} OR r.phone_e164 IN {_q(s.phones)})"
    ).fetchall() for p in row if p}
    s.shared_emails = len(shared_e)
    s.emails -= shared_e
    s.phones -= shared_p


def _activity_keys(con, cfg: SourceConfig, s: Subject, have) -> None:
    """Order ids, visitor cookies and other activity ids of the person's raw rows."""
    for ds in cfg.datasets:
        ent = entity(ds.entity)
        table = f"raw.{ds.key}"
        if ds.entity == "contacts" or not have(table) or not ent.contact_ref:
            continue
        ids = {k.split(":", 1)[1] for k in s.contact_keys if k.startswith(ds.contact_system + ":")}
        cond = f"{ent.contact_ref} IN {_q(ids)}"
        if "shop_customer_no" in ent.column_names:
            cond += f" OR shop_customer_no IN {_q(s.shop_numbers)}"
        key = ent.key[0]
        rows = con.execute(f"SELECT DISTINCT {key}{', visitor_id' if 'visitor_id' in ent.column_names else ''} "
                           f"FROM {table} WHERE {cond}").fetchall()
        if ds.entity == "orders":
            s.order_ids |= {r[0] for r in rows}
        elif "visitor_id" in ent.column_names:
            visitors = {r[1] for r in rows if r[1]}
            # a cookie someone else logged in with too (a shared computer) is not the person's alone
            shared = {r[0] for r in con.execute(
                f"SELECT DISTINCT visitor_id FROM {table} WHERE visitor_id IN {_q(visitors)} "
                f"AND {ent.contact_ref} IS NOT NULL AND {ent.contact_ref} NOT IN {_q(ids)}").fetchall()}
            s.visitor_ids |= visitors - shared
        elif key not in ("event_id",):
            s.other_ids |= {r[0] for r in rows}
