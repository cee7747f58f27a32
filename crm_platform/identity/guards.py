"""Checks on a finished resolution: each returns the offending rows (empty when it holds).

The clustering already refuses unions that break a guard; these checks look at the written tables,
so they also catch what a reviewer forced, a hand-edited table or a bug, and they block every
asset downstream of identity when they fire.
"""

from __future__ import annotations

import pandas as pd

from crm_platform.identity.spec import MatchSpec
from crm_platform.core.warehouse import table_exists

LIMIT = 20


def unmapped_contacts(con) -> tuple[int, pd.DataFrame]:
    """Staged contacts without a customer, crosswalk rows without a staged contact, and
    contacts mapped more than once."""
    q = """SELECT 'not mapped' AS problem, contact_key FROM staging.contacts ANTI JOIN identity.crosswalk USING (contact_key)
        UNION ALL SELECT 'no staged record', contact_key FROM identity.crosswalk ANTI JOIN staging.contacts USING (contact_key)
        UNION ALL SELECT 'mapped ' || count(*) || ' times', contact_key FROM identity.crosswalk GROUP BY contact_key HAVING count(*) > 1"""
    n = con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0]
    return n, con.execute(f"{q} LIMIT {LIMIT}").df()


def oversized_clusters(con, spec: MatchSpec) -> tuple[int, pd.DataFrame]:
    q = f"""SELECT customer_id, count(*) AS records FROM identity.crosswalk GROUP BY 1
            HAVING count(*) > {spec.guards.max_cluster_size}"""
    n = con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0]
    return n, con.execute(f"{q} ORDER BY records DESC LIMIT {LIMIT}").df()


# An identifier that one person's records disagree on more often than this (typed with typos) is
# evidence, not a veto: two different values do not keep two records apart
MAX_ID_DISAGREEMENT = 0.01


def vetoing_ids(con, spec: MatchSpec, schema: str = "identity") -> tuple[list[str], list[str]]:
    """The spec's conflicting identifiers that keep their veto, and a note for each that does not.

    An identifier the spec also compares is checked against the model: when the m probabilities
    say matching records disagree on it in more than MAX_ID_DISAGREEMENT of pairs (FEBRL's social
    security numbers carry the same typos as its names), a veto would split people, so the
    identifier counts only through its comparison."""
    keep, notes = [], []
    have = table_exists(con, f"{schema}.match_weights")
    for c in spec.guards.conflicting_ids:
        comp = next((x for x in spec.comparisons if x.columns == (c,)), None)
        if comp is None or not have:
            keep.append(c)
            continue
        off = con.execute(f"SELECT sum(m_probability) FROM {schema}.match_weights WHERE context = '' "
                          f"AND comparison = ? AND gamma >= 0 AND gamma < ?", [comp.name, len(comp.levels)]).fetchall()[0][0]
        if off is not None and off > MAX_ID_DISAGREEMENT:
            notes.append(f"{c}: one person's records disagree on it in {off:.1%} of pairs (typos), so two "
                         "different values are evidence against a match, not a veto")
        else:
            keep.append(c)
    return keep, notes


def conflicting_ids(con, spec: MatchSpec) -> tuple[int, pd.DataFrame]:
    """Customers holding two different values of an identifier that must not conflict (of those
    that keep their veto: ``vetoing_ids``)."""
    strong, _ = vetoing_ids(con, spec)
    if not strong:
        return 0, pd.DataFrame(columns=["customer_id", "identifier", "values"])
    parts = [f"""SELECT x.customer_id, '{c}' AS identifier,
                   string_agg(DISTINCT CAST(r.{c} AS VARCHAR), ', ') AS values
                 FROM identity.crosswalk x JOIN identity.records r USING (contact_key)
                 WHERE r.{c} IS NOT NULL GROUP BY 1 HAVING count(DISTINCT r.{c}) > 1"""
             for c in strong]
    q = " UNION ALL ".join(parts)
    n = con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0]
    return n, con.execute(f"{q} ORDER BY 1 LIMIT {LIMIT}").df()


def cannot_link_violations(con) -> tuple[int, pd.DataFrame]:
    """Pairs a cannot-link rule or a reviewer keeps apart that share a customer id."""
    q = """SELECT s.left_id, s.right_id, coalesce(s.cannot_link_rule, 'reviewer: no match') AS rule, xl.customer_id
           FROM identity.pair_scores s
           JOIN identity.crosswalk xl ON xl.contact_key = s.left_id
           JOIN identity.crosswalk xr ON xr.contact_key = s.right_id
           WHERE s.decision = 'cannot_link' AND xl.customer_id = xr.customer_id"""
    n = con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0]
    return n, con.execute(f"{q} LIMIT {LIMIT}").df()


def missing_provenance(con, fields: list[str]) -> tuple[int, pd.DataFrame]:
    """Golden fields holding a value without a provenance row (or the other way round)."""
    unpivot = " UNION ALL ".join(
        f"SELECT customer_id, '{f}' AS field FROM core.customers WHERE {f} IS NOT NULL" for f in fields)
    q = f"""SELECT 'no provenance' AS problem, customer_id, field FROM ({unpivot}) g
               ANTI JOIN core.customer_field_provenance p USING (customer_id, field)
            UNION ALL SELECT 'provenance without value', customer_id, field FROM core.customer_field_provenance p
               ANTI JOIN ({unpivot}) g USING (customer_id, field)
            UNION ALL SELECT 'customer without golden record', customer_id, NULL FROM
               (SELECT DISTINCT customer_id FROM identity.crosswalk) ANTI JOIN core.customers USING (customer_id)"""
    n = con.execute(f"SELECT count(*) FROM ({q})").fetchall()[0][0]
    return n, con.execute(f"{q} LIMIT {LIMIT}").df()
