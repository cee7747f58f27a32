"""One factory turns every Pandera model of crm_platform.contracts.schemas into an asset check.

Tables built incrementally are validated the way they are built: when the check's last
evaluation passed (crm_platform/core/check_results.py), its rows are checked row by row only where they changed since (``CHANGED``:
the column that says when a row was loaded or resolved, and the function naming the build the
rows belong to - a full rebuild starts over), and the keys of those rows are counted over every
row (a key can only be doubled by a changed row); otherwise every row (or the sample of a large
table) again. Each evaluation records how far it validated.
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable

import dagster as dg
import duckdb
import pandera.pandas as pa
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib.metadata import markdown_table
from crm_platform.staging import tables as staging
from crm_platform.governance import pii
from crm_platform.contracts.entities import ENTITIES
from crm_platform.ingest.sources import SourceConfig
from crm_platform.contracts.schemas import (BLOCKING, CUSTOMER360_BLOCKING, CUSTOMER360_SCHEMAS,
                                            IDENTITY_BLOCKING, IDENTITY_SCHEMAS, MAY_BE_EMPTY, STAGING_SCHEMAS)
from crm_platform.contracts.validation import validate_table
from crm_platform.core import check_results
from crm_platform.core.warehouse import table_exists
from resources.warehouse import read_only


def check_name(model: type[pa.DataFrameModel]) -> str:
    """The name of the check that validates a table against the Pandera ``model``."""
    return f"pandera_{model.__name__}"


@dataclass(frozen=True)
class Changed:
    column: str            # when a row was loaded or resolved
    words: str             # the same, for the check's description
    generation: Callable[[duckdb.DuckDBPyConnection], str] | None = None  # the build the rows belong to


CHANGED = {
    **{("staging", name): Changed("_loaded_at", "loaded", partial(staging.generation, entity_name=name))
       for name in STAGING_SCHEMAS},
    ("identity", "crosswalk"): Changed("resolved_at", "resolved"),
    **{key: Changed("_built_at", "built") for key in (
        ("identity", "candidate_pairs"), ("identity", "pair_scores"), ("identity", "links"), ("core", "customers"),
        ("core", "customer_field_provenance"), ("core", "customer_events"))},
}


def _validated_through(warehouse: DuckDBResource, asset: str, check: str, generation: str | None) -> str | None:
    """How far the check's last evaluation validated, if it passed and the rows are of the same build."""
    last = check_results.last(check_results.path_beside(warehouse.database), asset, check)
    if last is None or not last.passed:
        return None
    through, gen = last.metadata.get("validated_through"), last.metadata.get("table_generation")
    return through if through is not None and gen == generation else None


def pandera_check(table_key: list[str], model: type[pa.DataFrameModel],
                  blocking: bool, allow_empty: bool = False, empty_note: str = "") -> dg.AssetChecksDefinition:
    table = ".".join(table_key)
    changed = CHANGED.get(tuple(table_key))

    @policy.asset_check(
        asset=dg.AssetKey(table_key),
        name=check_name(model),
        blocking=blocking,
        description=(f"Validates {table} against the Pandera model {model.__name__}"
                     f"{' (blocking: downstream assets wait for it)' if blocking else ''}: "
                     f"{(model.__doc__ or '').strip()}"),
    )
    def pandera_contract(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        progress = {}
        with read_only(warehouse) as con:
            only = None
            if changed and table_exists(con, table):
                generation = changed.generation(con) if changed.generation else ""
                since = _validated_through(warehouse, "/".join(table_key), check_name(model), generation)
                if since:
                    only = (f"{changed.column} > TIMESTAMP '{since}'",
                            f"{changed.words} after {since} (the last validation passed up to there)")
                through = con.execute(f"SELECT max({changed.column})::VARCHAR FROM {table}").fetchall()[0][0]
                progress = {"validated_through": through, "table_generation": generation}
            result = validate_table(con, table, model, allow_empty=allow_empty, only=only, empty_note=empty_note)
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.summary(),
            metadata={"rows_validated": result.rows,
                      "rows_checked_row_by_row": result.sampled or (result.checked if result.only else result.rows),
                      "failure_count": result.failure_count,
                      "failure_cases": dg.MetadataValue.md(
                          markdown_table(_masked(result.failures), 20, 60)),
                      **{k: v for k, v in progress.items() if v is not None}},
        )

    return pandera_contract


def _masked(failures):
    """Pandera failure cases with the value hidden where the column holds personal data."""
    if not len(failures):
        return failures
    out = failures[["column", "check", "failure_case", "index"]].copy()
    personal = out["column"].astype(str).map(lambda c: pii.kind(c) is not None)
    out["failure_case"] = out["failure_case"].astype(object).where(~personal, "(personal data)")
    return out.rename(columns={"failure_case": "failing_value"})


def staging_checks(cfg: SourceConfig) -> list[dg.AssetChecksDefinition]:
    """A staging table of an entity no source declares is absent: empty, and rightly so."""
    return [pandera_check(["staging", name], model, name in BLOCKING, allow_empty=not cfg.declares(name),
                          empty_note=f"absent: no source declares {name}")
            for name, model in STAGING_SCHEMAS.items()]


def empty_note(key: tuple[str, str], cfg: SourceConfig) -> str:
    """Why the table ``key`` may be empty with these sources ('' when it may not): what no source
    declares, or a state the data is rightly in (``MAY_BE_EMPTY``)."""
    if not cfg.declares("contacts") and key[0] in ("identity", "core"):
        return "absent: no source declares contacts"
    activity = [e for e in ACTIVITY_ENTITIES if cfg.declares(e)]
    if key == ("core", "customer_events") and not activity:
        return f"absent: no source declares an activity ({', '.join(ACTIVITY_ENTITIES)})"
    return MAY_BE_EMPTY.get(key, "")


# what can put a customer on the timeline: every entity with an owner in the contacts
ACTIVITY_ENTITIES = tuple(name for name, e in ENTITIES.items() if e.contact_ref and name != "contacts")


def identity_checks(cfg: SourceConfig) -> list[dg.AssetChecksDefinition]:
    return [pandera_check(list(key), model, key in IDENTITY_BLOCKING, bool(note := empty_note(key, cfg)), note)
            for key, model in IDENTITY_SCHEMAS.items()]


def customer360_checks(cfg: SourceConfig) -> list[dg.AssetChecksDefinition]:
    return [pandera_check(list(key), model, key in CUSTOMER360_BLOCKING, bool(note := empty_note(key, cfg)), note)
            for key, model in CUSTOMER360_SCHEMAS.items()]


def partition_check(con, table: str, day_column: str, days: list[str], model: type[pa.DataFrameModel],
                    asset_key: dg.AssetKey, allow_empty: bool | set[str] = False) -> dg.AssetCheckResult:
    """The Pandera check of a daily-partitioned table, over the days just written only (the whole
    history is validated when it was written). A table never created (nothing to record yet, e.g.
    too few customers to cluster) is an empty one. ``allow_empty``: for every day, or the days
    that rightly hold nothing (no order placed that day)."""
    allowed = (lambda day: allow_empty) if isinstance(allow_empty, bool) else (lambda day: day in allow_empty)
    if not table_exists(con, table):
        return dg.AssetCheckResult(
            asset_key=asset_key, check_name=check_name(model), passed=all(map(allowed, days)),
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{table} does not exist" + (" (allowed: nothing to record yet)"
                                                     if all(map(allowed, days)) else ""))
    results = [validate_table(con, f"(SELECT * FROM {table} WHERE {day_column} = DATE '{day}')", model,
                              allow_empty=allowed(day)) for day in days]
    failed = [r for r in results if not r.passed]
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=check_name(model), passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(r.summary() for r in (failed or results[-1:])),
        metadata={"days_validated": len(results), "rows_validated": sum(r.rows for r in results),
                  "failure_count": sum(r.failure_count for r in results)})


def partition_check_spec(model: type[pa.DataFrameModel], asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(check_name(model), asset=asset_key, blocking=True,
                             description=f"Validates the day(s) just written against the Pandera model "
                                         f"{model.__name__}: {(model.__doc__ or '').strip()}")


def step_check_spec(model: type[pa.DataFrameModel], asset_key: dg.AssetKey, description: str = "") -> dg.AssetCheckSpec:
    """The Pandera check of a table its asset validates in its own step, once written."""
    return dg.AssetCheckSpec(check_name(model), asset=asset_key,
                             description=description or (model.__doc__ or "").strip())


def step_check(model: type[pa.DataFrameModel], result) -> dg.AssetCheckResult:
    """The result of a ``step_check_spec`` from what ``validate_table`` found."""
    return dg.AssetCheckResult(check_name=check_name(model), passed=result.passed, description=result.summary(),
                               metadata={"rows_validated": result.rows, "failure_count": result.failure_count})


# every asset check of the code location, registered by crm_platform.definitions once it is built
# (the assets cannot import the code location that imports them)
LOCATION_CHECKS: set = set()


def register_location(defs: dg.Definitions) -> None:
    LOCATION_CHECKS.clear()
    LOCATION_CHECKS.update(defs.resolve_asset_graph().asset_check_keys)


def latest_evaluations(warehouse: DuckDBResource) -> list[check_results.Evaluation]:
    """The latest evaluation of every check of the code location (of every check recorded, when the
    assets run without it, e.g. a test materializing a few), sorted by asset and check."""
    checks = {(k.asset_key.to_user_string(), k.name) for k in LOCATION_CHECKS} or None
    return check_results.latest(check_results.path_beside(warehouse.database), checks)
