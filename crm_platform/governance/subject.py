"""Finding everything held about one person (the data subject of an erasure or export request).

A request names a person by e-mail or customer id. :func:`resolve` follows the identity graph from
there: every customer id (an e-mail held by several customers is refused unless the request names
one of them or asks for all; a retired id reaches the customer it was merged into), every contact record of those customers in every source
system (the superseded versions in the raw layer too), and the keys their activity carries: shop
numbers, web visitor cookies, order ids. :func:`match_sql` turns those keys into one predicate per
source dataset, used alike to find a person's raw rows (export, erasure) and to keep an erased
person out at ingestion (over salted hashes, see crm_platform.governance.erasure).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from crm_platform.core import warehouse
from crm_platform.core.privacy import identifier_hash
from crm_platform.contracts.entities import entity
from crm_platform.ingest.sources import SourceConfig
from crm_platform.core.standardize import email_std


class SubjectNotFound(LookupError):
    """Nothing in the warehouse belongs to the identifier given."""


class AmbiguousSubject(LookupError):
    """The identifier is held by several customers: the request does not say which one is meant."""

    def __init__(self, customers: int):
        self.customers = customers
        super().__init__(f"this e-mail address is held by {customers} customers; name the one meant with "
                         "--customer-id (request file: customer_id), or give --all-matching (all_matching: "
                         "true) to include every one of them")


# identifier kinds kept (hashed) on the erasure list, and the canonical column each is read from
KINDS = ("email", "contact_key", "shop_customer_no", "visitor_id", "order_id")


@dataclass
class Subject:
    identifier_type: str
    identifier: str
    customer_ids: set[str] = field(default_factory=set)
    contact_keys: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)          # normalized, held by no other record
    shared_emails: int = 0                                  # held by another record too: kept
    shared_phones: int = 0
    matching_customers: int = 0                             # customers holding the identifier
    unresolved_records: int = 0                             # staged records with the e-mail, in no customer
    candidates: list[dict] = field(default_factory=list)    # not linked, same name and birth date/postcode
    phones: set[str] = field(default_factory=set)           # as delivered and E.164, held by no other record
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


def resolve(con, cfg: SourceConfig, identifier_type: str, identifier: str, *, customer_id: str | None = None,
            all_matching: bool = False) -> Subject:
    """Everything that identifies the person; raises SubjectNotFound when nothing does, and
    AmbiguousSubject when an e-mail address is held by several customers and neither
    ``customer_id`` (one of them) nor ``all_matching`` says whom the request is about."""
    if identifier_type == "email":
        identifier = email_std(identifier) or ""
    s = Subject(identifier_type, identifier)
    have = lambda t: warehouse.table_exists(con, t)  # noqa: E731
    unresolved: set[str] = set()        # staged contact records holding the e-mail, in no customer yet
    if identifier_type == "email":
        if have("identity.records") and have("identity.crosswalk"):
            s.customer_ids |= {r[0] for r in con.execute(
                "SELECT x.customer_id FROM identity.records r JOIN identity.crosswalk x USING (contact_key) "
                "WHERE r.email_std = ?", [identifier]).fetchall()}
        if have("core.customers"):
            s.customer_ids |= {r[0] for r in con.execute(
                "SELECT customer_id FROM core.customers WHERE lower(trim(email)) = ?", [identifier]).fetchall()}
        if have("staging.contacts"):
            linked = "AND contact_key NOT IN (SELECT contact_key FROM identity.crosswalk)" \
                if have("identity.crosswalk") else ""
            unresolved = {r[0] for r in con.execute(
                f"SELECT contact_key FROM staging.contacts WHERE email_std = ? {linked}", [identifier]).fetchall()}
        s.matching_customers = len(s.customer_ids)
        if customer_id is not None:
            if customer_id not in s.customer_ids:
                raise SubjectNotFound(f"customer {customer_id} does not hold this e-mail address")
            s.customer_ids, unresolved = {customer_id}, set()
        elif len(s.customer_ids) > 1 and not all_matching:
            raise AmbiguousSubject(len(s.customer_ids))
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
        s.matching_customers = 1
    else:
        raise ValueError(f"identifier type must be email or customer_id, not {identifier_type!r}")

    records = []
    if have("identity.crosswalk") and s.customer_ids:
        records = con.execute(
            "SELECT x.contact_key, r.source_system, r.source_record_id, r.email_std, r.phone, r.phone_e164, "
            f"r.shop_customer_no, r.shop_account FROM identity.crosswalk x JOIN identity.records r USING (contact_key) "
            f"WHERE x.customer_id IN {_q(s.customer_ids)}").fetchall()
    if unresolved:
        records += con.execute(
            "SELECT contact_key, source_system, source_record_id, email_std, phone, phone_e164, shop_customer_no, "
            f"NULL FROM staging.contacts WHERE contact_key IN {_q(unresolved)}").fetchall()
    s.unresolved_records = len(unresolved)
    for key, system, rid, email, phone, e164, shop_no, shop_acct in records:
        s.contact_keys.add(key)
        s.emails |= {email} - {None}
        s.phones |= {phone, e164} - {None}
        s.shop_numbers |= {shop_no, shop_acct} - {None}
        if system == "shop":
            s.shop_numbers.add(rid)
    if identifier_type == "email" and (s.contact_keys or s.customer_ids):
        s.emails.add(identifier)
    # an address another record holds too is not the person's alone: it finds no further records
    s.emails -= _held_by_others(con, cfg, s, have, "email", s.emails, raw=False)
    # superseded deliveries of the same records (older file versions), and records of the person's
    # e-mail address never staged (loaded after the last staging)
    for ds in cfg.by_entity("contacts"):
        table = f"raw.{ds.key}"
        if not have(table):
            continue
        ids = {k.split(":", 1)[1] for k in s.contact_keys if k.startswith(ds.system + ":")}
        staged = f"AND '{ds.system}:' || source_record_id NOT IN (SELECT contact_key FROM staging.contacts)" \
            if have("staging.contacts") else ""
        for rid, email, phone, shop_no in con.execute(
                f"SELECT DISTINCT source_record_id, lower(trim(email)), phone, shop_customer_no FROM {table} "
                f"WHERE source_record_id IN {_q(ids)} OR (lower(trim(email)) IN {_q(s.emails)} {staged})").fetchall():
            s.contact_keys.add(f"{ds.system}:{rid}")
            s.emails |= {email} - {None}
            s.phones |= {phone} - {None}
            s.shop_numbers |= {shop_no} - {None}
            if ds.system == "shop":
                s.shop_numbers.add(rid)
    if not s.customer_ids and not s.contact_keys:
        raise SubjectNotFound(f"no customer or source record holds this {identifier_type}")
    _drop_shared(con, cfg, s, have)
    _activity_keys(con, cfg, s, have)
    if have("alerts.customer_alerts"):
        s.alert_ids = {r[0] for r in con.execute(
            f"SELECT alert_id FROM alerts.customer_alerts WHERE customer_id IN {_q(s.customer_ids)}").fetchall()}
    s.candidates = unlinked_candidates(con, s, have)
    return s


def _held_by_others(con, cfg: SourceConfig, s: Subject, have, kind: str, values: set[str],
                    raw: bool = True) -> set[str]:
    """Which of ``values`` (e-mail addresses or phone numbers) a contact record that is not the
    person's holds too: in identity resolution's records, in staging (records not resolved yet),
    and with ``raw`` in any version of a raw contact row (records not staged yet)."""
    if not values:
        return set()
    mine, vals = _q(s.contact_keys), _q(values)
    found: set[str] = set()
    for table in ("identity.records", "staging.contacts"):
        if not have(table):
            continue
        if kind == "email":
            sql = f"SELECT DISTINCT email_std FROM {table} WHERE contact_key NOT IN {mine} AND email_std IN {vals}"
        else:
            sql = (f"SELECT DISTINCT unnest([phone, phone_e164]) FROM {table} WHERE contact_key NOT IN {mine} "
                   f"AND (phone IN {vals} OR phone_e164 IN {vals})")
        found |= {r[0] for r in con.execute(sql).fetchall()}
    for ds in cfg.by_entity("contacts") if raw else []:
        table = f"raw.{ds.key}"
        if not have(table):
            continue
        expr = "lower(trim(email))" if kind == "email" else "phone"
        found |= {r[0] for r in con.execute(
            f"SELECT DISTINCT {expr} FROM {table} WHERE '{ds.system}:' || source_record_id NOT IN {mine} "
            f"AND {expr} IN {vals}").fetchall()}
    return found & values


def _drop_shared(con, cfg: SourceConfig, s: Subject, have) -> None:
    """E-mail addresses and phone numbers another contact record holds too (resolved, staged or
    only loaded) stay theirs: they are neither scanned for nor put on the erasure list, and no line
    is cut for holding them."""
    shared_e = _held_by_others(con, cfg, s, have, "email", s.emails)
    shared_p = _held_by_others(con, cfg, s, have, "phone", s.phones)
    s.shared_emails += len(shared_e)
    s.shared_phones += len(shared_p)
    s.emails -= shared_e
    s.phones -= shared_p


# what makes a record not linked to the person a candidate: the same standardized first and last
# name, and a birth date, postcode and city that agree wherever both records hold one (one at least:
# a sales lead has a city but no birth date or postcode)
CANDIDATE_FIELDS = ("birth_date", "postcode", "city_std")


def unlinked_candidates(con, s: Subject, have) -> list[dict]:
    """Staged contact records not linked to the person that may be them all the same: same name and
    the same birth date, postcode and city where both records hold them. For the operator to confirm (an
    erasure does not reach them): each with its customer id, source system and what agrees."""
    if not have("staging.contacts") or not s.contact_keys:
        return []
    have_cols = set(warehouse.columns(con, "staging.contacts"))
    fields = [c for c in CANDIDATE_FIELDS if c in have_cols]
    if not fields or not {"first_name_std", "last_name_std"} <= have_cols:
        return []
    agree = " AND ".join(f"(o.{c} IS NULL OR m.{c} IS NULL OR o.{c} = m.{c})" for c in fields)
    held = " OR ".join(f"(o.{c} IS NOT NULL AND o.{c} = m.{c})" for c in fields)
    xwalk = ("LEFT JOIN identity.crosswalk x ON x.contact_key = o.contact_key" if have("identity.crosswalk")
             else "LEFT JOIN (SELECT NULL::VARCHAR AS contact_key, NULL::VARCHAR AS customer_id) x ON false")
    rows = con.execute(f"""
        SELECT DISTINCT o.contact_key, o.source_system, x.customer_id,
               list_filter([{', '.join(f"CASE WHEN o.{c} = m.{c} THEN '{c.removesuffix('_std')}' END" for c in fields)}],
                           lambda f: f IS NOT NULL) AS agreeing
        FROM staging.contacts m JOIN staging.contacts o
          ON o.first_name_std = m.first_name_std AND o.last_name_std = m.last_name_std
         AND o.contact_key NOT IN {_q(s.contact_keys)} AND ({agree}) AND ({held})
        {xwalk}
        WHERE m.contact_key IN {_q(s.contact_keys)}
          AND (x.customer_id IS NULL OR x.customer_id NOT IN {_q(s.customer_ids)})
        ORDER BY 1""").fetchall()
    out: dict[str, dict] = {}
    for k, sys_, cid, agreeing in rows:
        if k not in out or len(agreeing) + 1 > len(out[k]["agreeing"]):
            out[k] = {"contact_key": k, "source_system": sys_, "customer_id": cid, "agreeing": ["name", *agreeing]}
    return list(out.values())


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
