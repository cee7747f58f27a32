"""Golden customer records by configurable survivorship, with provenance for every field.

``core.customers`` holds one row per customer_id; ``core.customer_field_provenance`` says, for
every non-null golden field, which staged record supplied it and under which rule.

Incremental when asked (the daily run): ``core.build_state`` remembers the survivorship rules and
the newest resolution the golden records reflect; only customers whose crosswalk rows were
resolved since, and customers gone from the crosswalk, are rebuilt. Survivorship works within one
customer, so the rows are those of a full build. Other rules, or no state, build everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from crm_platform.contracts import buildstate
from crm_platform.core.settings import DEFAULT_SURVIVORSHIP
from crm_platform.core.warehouse import table_exists, transaction

STEP = "golden_records"
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


def _why_full(con, rules_hash: str) -> str | None:
    state = buildstate.held(con, STEP)
    if state is None or not all(table_exists(con, t) for t in ("core.customers", "core.customer_field_provenance")):
        return "no earlier build"
    if state["fingerprint"] != rules_hash:
        return "the survivorship rules changed"
    return None


def build(con, rules: list[FieldRule], crosswalk: str = "identity.crosswalk",
          records: str = "identity.records", incremental: bool = False) -> dict:
    """Write core.customers and core.customer_field_provenance; return row counts, the mode and
    the customers rebuilt."""
    con.execute("CREATE SCHEMA IF NOT EXISTS core")
    rules_hash = buildstate.fingerprint((rules, "_built_at"))
    reason = _why_full(con, rules_hash) if incremental else "full build asked for"
    if reason is None:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _affected AS
            SELECT DISTINCT customer_id FROM {crosswalk} WHERE resolved_at > ?
            UNION SELECT customer_id FROM core.customers ANTI JOIN {crosswalk} USING (customer_id)""",
                    [buildstate.held(con, STEP)["resolved_through"]])
        n, total = con.execute(f"SELECT (SELECT count(*) FROM _affected), (SELECT count(DISTINCT customer_id) "
                               f"FROM {crosswalk})").fetchall()[0]
        if n > 0.2 * max(total, 1):
            reason = f"{n} of {total} customers changed (more than 20 %)"
    mode = "incremental" if reason is None else "full"
    only = " WHERE x.customer_id IN (SELECT customer_id FROM _affected)" if mode == "incremental" else ""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _members AS
        SELECT x.customer_id, r.* FROM {crosswalk} x JOIN {records} r USING (contact_key){only}""")
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
                contact_key AS source_contact_key, dataset AS source_dataset, '{fr.rule}' AS rule,
                now()::TIMESTAMP AS _built_at
                FROM _g{i} WHERE {o} IS NOT NULL""")
    customers = f"""
        WITH base AS (
            SELECT customer_id, count(*)::INTEGER AS source_records,
                   list_sort(list_distinct(list(source_system))) AS source_systems,
                   min(created_at) AS first_seen_at, max(coalesce(updated_at, created_at)) AS last_updated_at
            FROM _members GROUP BY customer_id)
        SELECT base.customer_id, {', '.join(selects)}, base.source_records, base.source_systems,
               base.first_seen_at, base.last_updated_at, now()::TIMESTAMP AS _built_at
        FROM base {' '.join(joins)} ORDER BY base.customer_id"""
    fields = " UNION ALL ".join(provenance) + " ORDER BY customer_id, field"
    with transaction(con):
        for table, select in (("customers", customers), ("customer_field_provenance", fields)):
            if mode == "incremental":
                con.execute(f"DELETE FROM core.{table} WHERE customer_id IN (SELECT customer_id FROM _affected)")
                con.execute(f"INSERT INTO core.{table} BY NAME {select}")
            else:
                con.execute(f"CREATE OR REPLACE TABLE core.{table} AS {select}")
        buildstate.record(con, STEP, rules_hash,
                          con.execute(f"SELECT max(resolved_at) FROM {crosswalk}").fetchall()[0][0])
    rebuilt = con.execute("SELECT count(DISTINCT customer_id) FROM _members").fetchall()[0][0]
    for t in [f"_g{i}" for i in range(len(rules))] + ["_members", "_affected"]:
        con.execute(f"DROP TABLE IF EXISTS {t}")
    counts = {t: con.execute(f"SELECT count(*) FROM core.{t}").fetchall()[0][0]
              for t in ("customers", "customer_field_provenance")}
    return {**counts, "mode": mode, "reason": reason or "customers resolved since the last build",
            "customers_rebuilt": rebuilt}
