"""The platform's policy for every asset, in one place: who owns it, the pool its steps run in,
the layer and personal-data tags, the cadence tag the jobs select by, what starts it and when the
business tables count as stale; and that every check result is recorded (assets/lib/ledger.py).

The stage modules declare what an asset is (key, group, kinds, parents, checks); ``apply`` adds
the rest over the whole code location (``crm_platform/definitions.py``).
"""

from datetime import timedelta
import dagster as dg

from assets.lib import keys
from crm_platform.core import settings
from assets.lib.ledger import recorded

OWNERS = ["team:data"]
# the heavy stages (staging, identity, timeline, features) run on the engine CRM_PLATFORM_ENGINE names
HEAVY_KINDS = frozenset({settings.engine().name, "sql"})
# DuckDB allows one writer at a time: every step that opens the warehouse takes the one slot
POOL = "duckdb"


def _decorator(dagster_decorator):
    """A Dagster decorator with the platform's pool, whose steps record every check result they
    produce (assets/lib/ledger.py)."""
    def decorator(**kw):
        return lambda fn: dagster_decorator(pool=POOL, **kw)(recorded(fn))
    return decorator


asset = _decorator(dg.asset)
multi_asset = _decorator(dg.multi_asset)
asset_check = _decorator(dg.asset_check)

# Follow the parents: materialize (the latest day's partition) when a parent was updated since this
# asset was last requested or updated, none is missing and nothing is running. Unlike ``eager()``,
# a new empty day does not trigger on its own: the day's data arrives with the nightly refresh.
FOLLOW_PARENTS = (dg.AutomationCondition.in_latest_time_window()
                  & dg.AutomationCondition.any_deps_updated().since_last_handled()
                  & ~dg.AutomationCondition.any_deps_missing()
                  & ~dg.AutomationCondition.any_deps_in_progress()
                  & ~dg.AutomationCondition.in_progress()).with_label("follow_parents")

# What the business reads every morning: stale after a day and a bit, failed after two.
FRESH = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
BUSINESS = {keys.KPI_DAILY, keys.SEGMENTS, keys.CHURN_SCORES, keys.CLV_SCORES, keys.CUSTOMER_ALERTS,
            keys.KPI_ALERTS, keys.OUTBOX, keys.DASHBOARD}
# Started by their own triggers, not by their parents: ingestion (landing sensor, schedule), the
# models (weekly schedule, drift sensor) and the request register (requests sensor).
OWN_TRIGGER = {*keys.SCORED_BY.values(), keys.REQUESTS, keys.SUBJECT_REQUESTS}

# Personal data by layer (crm_platform/governance/pii.py): the source layers hold it, the analytical
# layers carry the customer id only (their no_direct_pii checks), governance keeps hashes.
PII_BY_LAYER = {"raw": "direct", "staging": "direct", "identity": "direct", "core": "direct",
                "features": "pseudonymous", "ml": "pseudonymous", "marts": "pseudonymous", "alerts": "pseudonymous"}
# the tag the day-partitioned assets carry, which the daily jobs select by (sensors/)
CADENCE, DAILY = "cadence", "daily"


def _spec(spec: dg.AssetSpec) -> dg.AssetSpec:
    layer = spec.key.path[0]
    own = spec.key in OWN_TRIGGER or layer == "raw"
    tags = {"layer": layer, **spec.tags}
    if layer in PII_BY_LAYER:
        tags.setdefault("pii", PII_BY_LAYER[layer])
    if isinstance(spec.partitions_def, dg.TimeWindowPartitionsDefinition):
        tags[CADENCE] = DAILY
    return spec.replace_attributes(
        owners=spec.owners or OWNERS, tags=tags, automation_condition=None if own else FOLLOW_PARENTS,
        freshness_policy=FRESH if spec.key in BUSINESS else spec.freshness_policy)


def apply(assets: list) -> list:
    """The assets with the platform's policy applied."""
    return dg.map_asset_specs(_spec, assets)
