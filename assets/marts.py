"""Marts: lifecycle stages and RFM segments, KPIs and cohort retention, channel attribution,
behaviour clusters and lookalikes per day (domain code in crm_platform/marts).

The lifecycle step also writes the KPI tables: the KPIs read the same lifecycle history, computed
once a day there.
"""

from datetime import date

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.lib import keys
from assets.lib.checks import partition_check, partition_check_spec
from assets.lib.metadata import image, markdown_table, table_metadata, table_spec
from assets.lib.config import KPIS as KPI_CONFIG, LOOKALIKES as LOOKALIKE_CONFIG, SEGMENTS as CONFIG
from assets.lib.partitions import daily_asset, daily_multi_asset
from crm_platform.marts import attribution, behaviour_clusters as clusters, kpis, segments
from crm_platform.core.plots import bar_plot, trend_plot
from crm_platform.core.warehouse import table_exists
from crm_platform.contracts.schemas import (BehaviourClusterProfiles, BehaviourClusters, ChannelAttribution,
                                            CohortRetention, CustomerSegments, KpiDaily, LifecycleTransitions,
                                            Lookalikes)
from crm_platform.contracts.vocabularies import ACTIVE, KPIS, STAGES

TRANSITIONS, SEGMENTS = keys.TRANSITIONS, keys.SEGMENTS


KPI = keys.KPI_DAILY
# the KPIs plotted over time in the asset's metadata
TREND = ("active_customers", "churn_rate", "revenue", "repeat_purchase_rate", "nps")
SHARES = frozenset(k for k in TREND if KPIS[k][1])
COHORTS = keys.COHORTS


def kpi_specs(deps) -> list[dg.AssetSpec]:
    """The KPI tables, written by the lifecycle step (``customer_segments``) from the transitions it
    computes; the engagement KPI also reads the day's feature snapshot."""
    deps = [*deps, keys.FEATURES]
    return [
        table_spec(KPI, "KPIs of the partition's day over the trailing window: active customers, churn and retention "
                   "rate, orders, revenue, average order value, repeat-purchase rate, historic CLV (order value - "
                   "returns - support cost), NPS, engagement, lead-to-buyer and sales lead conversion, CAC and ROMI "
                   "per channel. Long format; a rate with too small a base is null with a note.", deps, "kpis"),
        table_spec(COHORTS, "Acquisition-month cohorts x months since acquisition: cohort size, customers ordering "
                   "in that month, retention and revenue, as known at the end of the partition's day.", deps, "kpis"),
    ]


KPI_CHECKS = [partition_check_spec(KpiDaily, KPI), partition_check_spec(CohortRetention, COHORTS)]


def kpi_results(con, days: list[str], out: dict) -> list:
    """Materializations (with the KPIs, their trend and the cohort grid) and checks of the KPI
    tables, after ``kpis.build_day`` of ``days`` returned ``out``."""
    last = days[-1]
    trend = con.sql(f"""SELECT kpi, round(value, 4) AS value, note FROM marts.kpi_daily
        WHERE kpi_date = DATE '{last}' ORDER BY kpi""").df()
    grid = con.sql(f"""PIVOT (SELECT strftime(cohort_month, '%Y-%m') AS cohort, cohort_size,
            months_since_acquisition AS m, round(retention, 2) AS retention
        FROM marts.cohort_retention WHERE snapshot_date = DATE '{last}' AND months_since_acquisition <= 6)
        ON m USING first(retention) ORDER BY cohort DESC""").df()
    checks = [partition_check(con, "marts.kpi_daily", "kpi_date", days, KpiDaily, KPI),
              partition_check(con, "marts.cohort_retention", "snapshot_date", days, CohortRetention, COHORTS,
                              allow_empty={d for d in days if out[d]["orders_known"] == 0})]
    history = con.sql(f"""PIVOT (SELECT kpi_date, kpi, value FROM marts.kpi_daily WHERE channel IS NULL
            AND kpi IN {TREND} AND kpi_date BETWEEN DATE '{last}' - INTERVAL 90 DAY AND DATE '{last}')
        ON kpi IN {TREND} USING first(value) ORDER BY kpi_date""").df().set_index("kpi_date")
    meta_k = table_metadata(con, "marts.kpi_daily", where=f"kpi_date = DATE '{last}'", preview_rows=20)
    meta_c = table_metadata(con, "marts.cohort_retention", where=f"snapshot_date = DATE '{last}'")
    values = out[last]["kpis"]
    return [
        dg.MaterializeResult(asset_key=KPI, metadata={
            **meta_k, "kpis": dg.MetadataValue.md(markdown_table(trend, 20, 80)),
            "not_reported": dg.MetadataValue.json(out[last]["not_reported"]),
            "kpi_trend": image(trend_plot(history, f"KPIs up to {last} (30-day windows)", SHARES), "KPI trend"),
            **{f"kpi/{k}": float(v) for k, v in values.items() if v is not None}}),
        dg.MaterializeResult(asset_key=COHORTS, metadata={
            **meta_c, "retention_first_6_months": dg.MetadataValue.md(markdown_table(grid, 40))}),
        *checks]


ATTRIBUTION = keys.ATTRIBUTION


@daily_asset(
    key=ATTRIBUTION, group_name="kpis", kinds={"duckdb", "sql"}, deps=keys.TIMELINE_DEPS,
    check_specs=[partition_check_spec(ChannelAttribution, ATTRIBUTION)],
)
def channel_attribution(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """The orders placed on the partition's day, credited to the marketing touches (UTM-tagged
    web visits, newsletter clicks, sales leads) in the lookback window before each: first-touch,
    last-touch and linear multi-touch; ``direct`` when none. CAC and ROMI per channel in
    marts/kpi_daily use it."""
    days = context.partition_keys
    with warehouse.get_connection() as con:
        out = {day: attribution.build_day(con, date.fromisoformat(day), KPI_CONFIG.attribution_lookback_days)
               for day in days}
        last = days[-1]
        empty = out[last]["orders"] == 0
        check = partition_check(con, "marts.channel_attribution", "order_date", days, ChannelAttribution,
                                ATTRIBUTION, allow_empty={d for d in days if out[d]["orders"] == 0})
        by_rule = con.sql(f"""PIVOT (SELECT channel, rule, round(sum(revenue_credit), 2) AS revenue
                FROM marts.channel_attribution WHERE order_date = DATE '{last}' GROUP BY ALL)
            ON rule USING first(revenue) ORDER BY channel""").df() if not empty else None
        meta = table_metadata(con, "marts.channel_attribution", where=f"order_date = DATE '{last}'")
    yield dg.MaterializeResult(metadata={
        **meta, "orders": out[last]["orders"], "lookback_days": KPI_CONFIG.attribution_lookback_days,
        "revenue_by_channel_and_rule": dg.MetadataValue.md(
            markdown_table(by_rule, 20) if by_rule is not None else "_no orders that day_")})
    yield check


def _spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return table_spec(key, description, keys.TIMELINE_DEPS, "segments")


def _sorted(counts: dict) -> list[tuple]:
    return sorted(counts.items(), key=lambda kv: -kv[1])


@daily_multi_asset(
    specs=[
        _spec(TRANSITIONS, "Lifecycle transitions that happened on the partition's day (lead → first-time "
              "buyer → repeat buyer → loyal → at risk → churned, and reactivations back to an active stage), "
              "each with its instant and reason. Thresholds in config/segments.yaml."),
        _spec(SEGMENTS, "Every customer's lifecycle stage (and since when) and RFM segment (champions, loyal, "
              "potential loyalists, new, promising, need attention, about to sleep, at risk, can't lose, "
              "hibernating, lost) at the end of the partition's day; rfm_note says why a customer has none."),
        *kpi_specs(keys.TIMELINE_DEPS),
    ],
    check_specs=[partition_check_spec(LifecycleTransitions, TRANSITIONS),
                 partition_check_spec(CustomerSegments, SEGMENTS), *KPI_CHECKS],
)
def customer_segments(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """Lifecycle state machine and RFM segments as of the end of each partition's day, from events
    known by then; and the day's KPIs and cohort retention, which read the same lifecycle history
    (every transition up to the day's end, 20 s a day at 1M customers: computed once here)."""
    days = context.partition_keys
    out, kpi_out = {}, {}
    with warehouse.get_connection() as con:
        for day in days:
            d = date.fromisoformat(day)
            out[day] = segments.build_day(con, CONFIG, d, keep_history=True)
            try:
                kpi_out[day] = kpis.build_day(con, CONFIG, KPI_CONFIG, d, history="_transitions")
            finally:
                con.execute("DROP TABLE _transitions")
        kpi_done = kpi_results(con, days, kpi_out)
        last = days[-1]
        moves = con.sql(f"""SELECT coalesce(from_stage, '(new)') AS from_stage, to_stage, count(*) AS customers
            FROM marts.lifecycle_transitions WHERE transition_at::DATE = DATE '{last}'
            GROUP BY ALL ORDER BY customers DESC""").df()
        grid = con.sql(f"""SELECT rfm_r AS r, count(*) FILTER (WHERE rfm_f + rfm_m <= 3) AS fm_low,
                count(*) FILTER (WHERE rfm_f + rfm_m BETWEEN 4 AND 7) AS fm_mid,
                count(*) FILTER (WHERE rfm_f + rfm_m >= 8) AS fm_high
            FROM marts.customer_segments WHERE snapshot_date = DATE '{last}' AND rfm_r IS NOT NULL
            GROUP BY 1 ORDER BY 1 DESC""").df()
        checks = [partition_check(con, "marts.lifecycle_transitions", "transition_at::DATE", days,
                                  LifecycleTransitions, TRANSITIONS, allow_empty=True),
                  partition_check(con, "marts.customer_segments", "snapshot_date", days, CustomerSegments, SEGMENTS)]
        meta_t = table_metadata(con, "marts.lifecycle_transitions", where=f"transition_at::DATE = DATE '{last}'")
        meta_s = table_metadata(con, "marts.customer_segments", where=f"snapshot_date = DATE '{last}'")
    o = out[last]
    yield dg.MaterializeResult(asset_key=TRANSITIONS, metadata={
        **meta_t, "transitions_per_day": dg.MetadataValue.json({d: v["transitions_that_day"] for d, v in out.items()}),
        "moves": dg.MetadataValue.md(markdown_table(moves, 30)),
        "reactivations": int(moves.loc[moves.from_stage.isin(["at_risk", "churned"])
                                       & moves.to_stage.isin(list(ACTIVE)), "customers"].sum())})
    yield dg.MaterializeResult(asset_key=SEGMENTS, metadata={
        **meta_s, "lifecycle_stages": dg.MetadataValue.json(o["stages"]),
        "rfm_segments": dg.MetadataValue.json(o["rfm_segments"]),
        "rfm_computed": o["rfm_computed"], "rfm_buyers": o["rfm_buyers"],
        "rfm_grid_r_by_fm": dg.MetadataValue.md(markdown_table(grid, 5)),
        "segment_sizes": image(bar_plot(*zip(*_sorted(o["rfm_segments"])), f"RFM segments on {last}", "customers"),
                               "RFM segment sizes") if o["rfm_segments"] else "no RFM segments",
        "stage_sizes": image(bar_plot(list(STAGES), [o["stages"].get(s, 0) for s in STAGES],
                                      f"Lifecycle stages on {last}", "customers"), "lifecycle stage sizes")})
    yield from checks
    yield from kpi_done


BEHAVIOUR, PROFILES, FEATURES = keys.BEHAVIOUR, keys.PROFILES, keys.FEATURES


@daily_multi_asset(
    specs=[
        table_spec(BEHAVIOUR, "Each customer's behaviour cluster on the partition's day: scikit-learn k-means on "
                   "scaled features of that day's snapshot, k chosen by silhouette in 3..8, with a readable "
                   "label (the features in which the cluster stands out).", [FEATURES], "segments"),
        table_spec(PROFILES, "Per behaviour cluster: size, share, mean features, label, chosen k and silhouette.",
                   [FEATURES], "segments"),
    ],
    check_specs=[partition_check_spec(BehaviourClusters, BEHAVIOUR),
                 partition_check_spec(BehaviourClusterProfiles, PROFILES)],
)
def behaviour_clusters(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """k-means behaviour clusters of the day's feature snapshot, profiled and labelled."""
    days = context.partition_keys
    with warehouse.get_connection() as con:
        results = {day: clusters.build_day(con, date.fromisoformat(day)) for day in days}
        checks = [partition_check(con, "marts.behaviour_clusters", "snapshot_date", days, BehaviourClusters, BEHAVIOUR),
                  partition_check(con, "marts.behaviour_cluster_profiles", "snapshot_date", days,
                                  BehaviourClusterProfiles, PROFILES, allow_empty=True)]
        last = days[-1]
        meta_b = table_metadata(con, "marts.behaviour_clusters", where=f"snapshot_date = DATE '{last}'")
        meta_p = table_metadata(con, "marts.behaviour_cluster_profiles", where=f"snapshot_date = DATE '{last}'") \
            if table_exists(con, "marts.behaviour_cluster_profiles") else {}
    res = results[last]
    yield dg.MaterializeResult(asset_key=BEHAVIOUR, metadata={
        **meta_b, "k": res.k or 0, "note": res.note or "",
        "silhouette_by_k": dg.MetadataValue.json({str(k): v for k, v in res.silhouettes.items()})})
    yield dg.MaterializeResult(asset_key=PROFILES, metadata={
        **meta_p, "profiles": dg.MetadataValue.md(markdown_table(res.profiles, 12, 45))})
    yield from checks


LOOKALIKES = keys.LOOKALIKES


@daily_asset(
    key=LOOKALIKES, group_name="segments", kinds={"duckdb", "sql"}, deps=[FEATURES, SEGMENTS],
    check_specs=[partition_check_spec(Lookalikes, LOOKALIKES)],
)
def lookalikes(context: dg.AssetExecutionContext, warehouse: DuckDBResource):
    """Every customer and open lead outside the seed segment (config: lookalikes.seed_segment,
    default champions), ranked by how closely their behaviour (basket size, returns, discounts,
    category breadth, newsletter opens, web visits, tickets, engagement) resembles the seed's
    nearest members: the people marketing should target next."""
    days = context.partition_keys
    with warehouse.get_connection() as con:
        out = {day: clusters.build_lookalikes(con, date.fromisoformat(day), LOOKALIKE_CONFIG) for day in days}
        note = out[days[-1]][1]
        check = partition_check(con, "marts.lookalikes", "snapshot_date", days, Lookalikes, LOOKALIKES,
                                allow_empty=note is not None)
        top = con.sql(f"""SELECT lifecycle_stage, count(*) AS customers, round(avg(lookalike_score), 3) AS mean_score,
                count(*) FILTER (WHERE rank <= 1000) AS in_top_1000
            FROM marts.lookalikes WHERE snapshot_date = DATE '{days[-1]}' GROUP BY 1 ORDER BY 3 DESC""").df() \
            if note is None else None
        meta = table_metadata(con, "marts.lookalikes", where=f"snapshot_date = DATE '{days[-1]}'") if note is None else {}
    yield dg.MaterializeResult(metadata={
        **meta, "seed_segment": LOOKALIKE_CONFIG.seed_segment, "scored": out[days[-1]][0], "note": note or "",
        "by_stage": dg.MetadataValue.md(markdown_table(top, 10) if top is not None else "_no scores_")})
    yield check


def marts_assets() -> list:
    return [customer_segments, channel_attribution, behaviour_clusters, lookalikes]
