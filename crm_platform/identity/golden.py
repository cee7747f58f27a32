"""Golden customer records by configurable survivorship, with provenance for every field.

``core.customers`` holds one row per customer_id; ``core.customer_field_provenance`` says, for
every non-null golden field, which staged record supplied it and under which rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from crm_platform.settings import DEFAULT_SURVIVORSHIP
RECENT = "coalesce(updated_at, created_at) DESC NULLS LAST"
TIEBREAK = f"trust_rank ASC NULLS LAST, {RECENT}, contact_key"
RULES = {
    "trust_rank": lambda col: TIEBREAK,
    "most_recent": lambda col: f"{RECENT}, trust_rank ASC NULLS LAST, contact_key",
    "most_frequent": lambda col: f"_freq DESC, {TIEBREAK}",
    "longest": lambda col: f"length(CAST({col} AS VARCHAR)) DESC, {TIEBREAK}",
    "most_restrictive": lambda col: f"{col} ASC, {TIEBREAK}",
}


class SurvivorshipError(ValueError):
    pass


@dataclass(frozen=True)
class FieldRule:
    name: str
    rule: str
    columns: tuple[str, ...]       # source columns in identity.records
    outputs: tuple[str, ...]       # golden column names


def load_rules(path: str | Path = DEFAULT_SURVIVORSHIP) -> list[FieldRule]:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    out = []
    for name, spec in (raw.get("fields") or {}).items():
        rule = spec.get("rule")
        if rule not in RULES:
            raise SurvivorshipError(f"{path}: field '{name}' has rule '{rule}'; known: {', '.join(RULES)}")
        if "group" in spec:
            cols = outs = tuple(spec["group"])
        else:
            cols, outs = (spec.get("column", name),), (name,)
        out.append(FieldRule(name, rule, tuple(cols), tuple(outs)))
    if not out:
        raise SurvivorshipError(f"{path}: no fields configured")
    return out


def build(con, rules: list[FieldRule], crosswalk: str = "identity.crosswalk",
          records: str = "identity.records") -> dict:
    """Write core.customers and core.customer_field_provenance; return row counts."""
    con.execute("CREATE SCHEMA IF NOT EXISTS core")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _members AS
        SELECT x.customer_id, r.* FROM {crosswalk} x JOIN {records} r USING (contact_key)""")
    provenance, joins, selects = [], [], []
    for i, fr in enumerate(rules):
        lead = fr.columns[0]
        order = RULES[fr.rule](lead)
        cols = ", ".join(f"{c} AS {o}" for c, o in zip(fr.columns, fr.outputs))
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _g{i} AS
            SELECT customer_id, contact_key, dataset, {', '.join(fr.outputs)} FROM (
                SELECT customer_id, contact_key, dataset, {cols},
                       row_number() OVER (PARTITION BY customer_id ORDER BY {order}) AS _rn
                FROM (SELECT *, count(*) OVER (PARTITION BY customer_id, {lead}) AS _freq
                      FROM _members WHERE {lead} IS NOT NULL)) WHERE _rn = 1""")
        joins.append(f"LEFT JOIN _g{i} g{i} USING (customer_id)")
        selects += [f"g{i}.{o}" for o in fr.outputs]
        for o in fr.outputs:
            provenance.append(f"""SELECT customer_id, '{o}' AS field, CAST({o} AS VARCHAR) AS value,
                contact_key AS source_contact_key, dataset AS source_dataset, '{fr.rule}' AS rule
                FROM _g{i} WHERE {o} IS NOT NULL""")
    con.execute(f"""CREATE OR REPLACE TABLE core.customers AS
        WITH base AS (
            SELECT customer_id, count(*)::INTEGER AS source_records,
                   list_sort(list_distinct(list(source_system))) AS source_systems,
                   min(created_at) AS first_seen_at, max(coalesce(updated_at, created_at)) AS last_updated_at
            FROM _members GROUP BY customer_id)
        SELECT base.customer_id, {', '.join(selects)}, base.source_records, base.source_systems,
               base.first_seen_at, base.last_updated_at
        FROM base {' '.join(joins)} ORDER BY base.customer_id""")
    con.execute("CREATE OR REPLACE TABLE core.customer_field_provenance AS "
                + " UNION ALL ".join(provenance) + " ORDER BY customer_id, field")
    for i in range(len(rules)):
        con.execute(f"DROP TABLE _g{i}")
    con.execute("DROP TABLE _members")
    return {t: con.execute(f"SELECT count(*) FROM core.{t}").fetchall()[0][0]
            for t in ("customers", "customer_field_provenance")}
