"""Customer 360 assets: the unified timeline of every golden customer (domain code in
crm_platform/customer360/timeline.py)."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets import policy
from assets.lib import keys
from assets.lib.metadata import markdown_table, table_metadata, table_spec
from crm_platform.core import settings
from crm_platform.customer360 import timeline
from crm_platform.core.days import record_data_days
from resources.warehouse import heavy

EVENTS, UNATTRIBUTED = keys.EVENTS, keys.UNATTRIBUTED


def _spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return table_spec(key, description, [keys.CROSSWALK, *keys.ACTIVITY], "core", policy.HEAVY_KINDS)


@policy.multi_asset(
    specs=[
        _spec(EVENTS, "Every interaction of every golden customer on one timeline: orders, returns, "
              "e-mail events, tickets, identified web events, NPS answers, lead creation and conversion, "
              "with type, channel, value and source lineage. known_at says from when the platform could "
              "know an event was this customer's (anonymous web sessions: from the visitor's login)."),
        _spec(UNATTRIBUTED, "Activity rows no customer could be given, each with the reason (for example "
              "an order of a shop account whose record was quarantined). Anonymous web traffic is counted "
              "in the timeline's metadata, not listed."),
    ],
)
def customer_timeline(warehouse: DuckDBResource):
    """Build core.customer_events and core.unattributed_events from the staged activity tables and
    identity.crosswalk; daily, only the events of rows loaded or contacts resolved since the last
    build (timeline.build)."""
    with warehouse.get_connection() as con:
        with heavy(warehouse, con) as engine:
            counts = timeline.build(engine, incremental=True)
        example = con.sql("""SELECT event_at, known_at, event_type, channel, value, category, campaign
            FROM core.customer_events WHERE customer_id = ? ORDER BY event_at, event_type LIMIT 30""",
                          params=[counts["most_channels_customer"]]).df()
        meta = {k: table_metadata(con, ".".join(k.path)) for k in (EVENTS, UNATTRIBUTED)}
        lost = dict(con.execute("SELECT reason, count(*) FROM core.unattributed_events GROUP BY 1 "
                                "ORDER BY 2 DESC").fetchall())
        first_day, last_day = record_data_days(con, settings.paths().first_day_file,
                                                        settings.paths().last_day_file)
    yield dg.MaterializeResult(asset_key=EVENTS, metadata={
        **meta[EVENTS], "customers_with_events": counts["customers_with_events"],
        "first_event_day": str(first_day) if first_day else "no events yet",
        "last_data_day": str(last_day) if last_day else "no events yet",
        "events_by_type": dg.MetadataValue.json(counts["by_type"]),
        "by_channel": dg.MetadataValue.md(markdown_table(counts["by_channel"], 20)),
        "events_per_customer_p10_p50_p90": dg.MetadataValue.json(counts["events_per_customer"]),
        "events_per_customer_max": int(counts["events_per_customer_max"] or 0),
        "web_events_attributed_after_login": counts["web_events_attributed_after_login"],
        ("not_attributed_by_reason" if counts["mode"] == "full" else "not_attributed_by_reason_rows_made_this_run"):
            dg.MetadataValue.json(counts["unattributed"]),
        "build_mode": counts["mode"], "build_mode_reason": counts["reason"],
        "staged_rows_rebuilt_this_run": counts["staged_rows_rebuilt"] if counts["staged_rows_rebuilt"] is not None
        else "all (full build)",
        "example_timeline": dg.MetadataValue.md(markdown_table(example, 30))})
    yield dg.MaterializeResult(asset_key=UNATTRIBUTED, metadata={
        **meta[UNATTRIBUTED], "by_reason": dg.MetadataValue.json(lost)})


def customer360_assets() -> list:
    return [customer_timeline]

