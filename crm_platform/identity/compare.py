"""Comparison in SQL: the comparison vector of every candidate pair, one gamma level per field of
the match spec, plus the deterministic and cannot-link rule that holds for it."""
from __future__ import annotations

from crm_platform.identity.spec import MatchSpec
from crm_platform.identity.blocking import rel


def rule_case(rules, label: str | None = None) -> str:
    """The name of the first rule that holds for a pair (NULL when none), optionally aliased."""
    sql = ("CASE " + " ".join(f"WHEN {r.sql} THEN '{r.name}'" for r in rules) + " END") if rules else "NULL::VARCHAR"
    return sql + (f" AS {label}" if label else "")


def compare(con, spec: MatchSpec, out: str, pairs: str | None = None, into: str | None = None) -> None:
    """The comparison vector of every candidate pair (of ``pairs``), computed in SQL."""
    recs, uid = rel(out, "records"), spec.unique_id
    gammas = "".join(f"{c.case_sql()}, " for c in spec.comparisons)
    con.execute(f"""CREATE OR REPLACE TABLE {into or rel(out, 'comparisons')} AS
        SELECT p.left_id, p.right_id, p.blocking_rule, p.rule_mask, {gammas}
               {''.join(f"greatest(l.{c.tf}, r.{c.tf}) AS {c.tf}, " for c in spec.comparisons if c.tf_column)}
               {rule_case(spec.deterministic, 'deterministic_rule')},
               {rule_case(spec.guards.cannot_link, 'cannot_link_rule')},
               coalesce({rule_case(spec.contexts)}, '') AS context
        FROM {pairs or rel(out, 'candidate_pairs')} p
        JOIN {recs} l ON l.{uid} = p.left_id JOIN {recs} r ON r.{uid} = p.right_id""")
