"""Contracts of the daily tables: feature snapshots, lifecycle and segments, KPIs and cohorts,
behaviour clusters, lookalikes, channel attribution."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.vocabularies import (ACTIVE, ATTRIBUTION_RULES, KPIS, RFM_SEGMENTS, STAGES)
from crm_platform.contracts.schemas.base import CUSTOMER_ID, Text


class CustomerFeatures(pa.DataFrameModel):
    """One point-in-time feature snapshot: every customer known by the end of snapshot_date, with
    features computed only from events known by then."""

    snapshot_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    tenure_days: Series[int] = pa.Field(ge=0)
    recency_days: Series[float] = pa.Field(nullable=True, ge=0)
    orders_total: Series[int] = pa.Field(ge=0)
    revenue_total: Series[float] = pa.Field(ge=0)
    frequency: Series[int] = pa.Field(alias=r"^frequency_\d+d$", regex=True, ge=0)
    monetary: Series[float] = pa.Field(alias=r"^monetary_\d+d$", regex=True, ge=0)
    shares: Series[float] = pa.Field(alias=r"^(return_rate|discount_share|email_.*_rate_\d+d)$", regex=True,
                                     nullable=True, in_range={"min_value": 0, "max_value": 1})
    category_breadth: Series[int] = pa.Field(ge=0)
    tickets_open: Series[int] = pa.Field(ge=0)
    satisfaction_avg: Series[float] = pa.Field(nullable=True, in_range={"min_value": 1, "max_value": 5})
    nps_last: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 10})
    engagement_score: Series[float] = pa.Field(ge=0)
    latest_event_known_at: Series[pd.Timestamp] = pa.Field(nullable=True)

    @pa.dataframe_check(error="no feature is computed from an event known after the end of its snapshot day")
    def no_hindsight(cls, df: pd.DataFrame) -> Series[bool]:
        return df["latest_event_known_at"].isna() | (
            df["latest_event_known_at"] < df["snapshot_date"] + pd.Timedelta(days=1))

    @pa.dataframe_check(error="a longer window holds at least the orders of a shorter one")
    def nested_windows(cls, df: pd.DataFrame) -> Series[bool]:
        cols = sorted((c for c in df.columns if c.startswith("frequency_")), key=lambda c: int(c[10:-1]))
        ok = pd.Series(True, index=df.index)
        for short, long in zip(cols, cols[1:] + ["orders_total"]):
            ok &= df[short] <= df[long]
        return ok

    class Config:
        coerce = True
        strict = False
        unique = ["snapshot_date", "customer_id"]


class LifecycleTransitions(pa.DataFrameModel):
    """Every lifecycle stage change of a customer, with its instant and reason."""

    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    transition_at: Series[pd.Timestamp]
    from_stage: Series[Text] = pa.Field(nullable=True, isin=list(STAGES))
    to_stage: Series[Text] = pa.Field(isin=list(STAGES))
    reason: Series[Text] = pa.Field(str_length={"min_value": 3})
    orders_so_far: Series[int] = pa.Field(ge=0)
    is_reactivation: Series[bool]

    @pa.dataframe_check(error="a transition changes the stage")
    def changes(cls, df: pd.DataFrame) -> Series[bool]:
        return df["from_stage"].isna() | (df["from_stage"] != df["to_stage"])

    @pa.dataframe_check(error="a reactivation goes from at_risk or churned to an active stage")
    def reactivation(cls, df: pd.DataFrame) -> Series[bool]:
        real = df["from_stage"].isin(["at_risk", "churned"]) & df["to_stage"].isin(list(ACTIVE))
        return df["is_reactivation"] == real

    class Config:
        coerce = True
        strict = False
        unique = ["customer_id", "transition_at"]


class CustomerSegments(pa.DataFrameModel):
    """Each customer's lifecycle stage and RFM segment at the end of snapshot_date: one row per
    customer and day."""

    snapshot_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    lifecycle_stage: Series[Text] = pa.Field(isin=list(STAGES))
    stage_since: Series[pd.Timestamp]
    rfm_scores: Series[float] = pa.Field(alias=r"^rfm_[rfm]$", regex=True, nullable=True,
                                         in_range={"min_value": 1, "max_value": 5})
    rfm_segment: Series[Text] = pa.Field(nullable=True, isin=list(RFM_SEGMENTS))

    @pa.dataframe_check(error="a customer without an RFM segment says why (rfm_note)")
    def segment_or_reason(cls, df: pd.DataFrame) -> Series[bool]:
        return df["rfm_segment"].notna() != df["rfm_note"].notna()

    @pa.dataframe_check(error="a stage starts before the end of the snapshot day")
    def since_before_cutoff(cls, df: pd.DataFrame) -> Series[bool]:
        return df["stage_since"] < df["snapshot_date"] + pd.Timedelta(days=1)

    class Config:
        coerce = True
        strict = False
        unique = ["snapshot_date", "customer_id"]


class KpiDaily(pa.DataFrameModel):
    """One row per KPI and day over the trailing window; a rate with too small a base is null
    with a note saying so."""

    kpi_date: Series[pd.Timestamp]
    kpi: Series[Text] = pa.Field(isin=list(KPIS))
    channel: Series[Text] = pa.Field(nullable=True)
    window_days: Series[int] = pa.Field(ge=1)
    value: Series[float] = pa.Field(nullable=True)
    note: Series[Text] = pa.Field(nullable=True)

    @pa.dataframe_check(error="shares (churn, retention, repeat purchase, conversion) lie within [0, 1]")
    def shares(cls, df: pd.DataFrame) -> Series[bool]:
        share = df["kpi"].map(lambda k: KPIS[k][1])
        return ~share | df["value"].isna() | df["value"].between(0, 1)

    @pa.dataframe_check(error="NPS lies within [-100, 100], ROMI is at least -1 (all spend lost); counts "
                              "and money are not negative")
    def ranges(cls, df: pd.DataFrame) -> Series[bool]:
        v, k = df["value"], df["kpi"]
        return v.isna() | ((k == "nps") & v.between(-100, 100)) | ((k == "romi") & (v >= -1)) | (
            k == "historic_clv") | (~k.isin(["nps", "romi"]) & (v >= 0))

    @pa.dataframe_check(error="CAC and ROMI are per channel, the other KPIs for the whole base")
    def per_channel(cls, df: pd.DataFrame) -> Series[bool]:
        return df["kpi"].isin(["cac", "romi"]) == df["channel"].notna()

    @pa.dataframe_check(error="a KPI without a value says why")
    def null_has_note(cls, df: pd.DataFrame) -> Series[bool]:
        return df["value"].notna() | df["note"].notna()

    class Config:
        coerce = True
        strict = False
        unique = ["kpi_date", "kpi", "channel"]


class CohortRetention(pa.DataFrameModel):
    """Acquisition-month cohorts x months since acquisition: customers active (ordering) in that
    month, retention share and revenue, as known at the end of snapshot_date."""

    snapshot_date: Series[pd.Timestamp]
    cohort_month: Series[pd.Timestamp]
    months_since_acquisition: Series[int] = pa.Field(ge=0)
    cohort_size: Series[int] = pa.Field(ge=1)
    active_customers: Series[int] = pa.Field(ge=0)
    retention: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})
    revenue: Series[float] = pa.Field(ge=0)

    @pa.dataframe_check(error="every cohort is fully active in its acquisition month")
    def month_zero(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["months_since_acquisition"] != 0) | (df["active_customers"] == df["cohort_size"])

    class Config:
        coerce = True
        strict = False
        unique = ["snapshot_date", "cohort_month", "months_since_acquisition"]


class BehaviourClusters(pa.DataFrameModel):
    """Each customer's k-means behaviour cluster and its readable label on snapshot_date; with too
    few customers to cluster, no cluster and a label saying so."""

    snapshot_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    cluster: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=0)
    cluster_label: Series[Text] = pa.Field(str_length={"min_value": 3})

    @pa.dataframe_check(error="a customer without a cluster carries the reason as its label")
    def unclustered_says_why(cls, df: pd.DataFrame) -> Series[bool]:
        return df["cluster"].notna() | df["cluster_label"].str.contains("too few")

    class Config:
        coerce = True
        strict = False
        unique = ["snapshot_date", "customer_id"]


class BehaviourClusterProfiles(pa.DataFrameModel):
    """Per behaviour cluster and day: size, share, mean features, label, chosen k and silhouette."""

    snapshot_date: Series[pd.Timestamp]
    cluster: Series[int] = pa.Field(ge=0)
    cluster_label: Series[Text] = pa.Field(str_length={"min_value": 3})
    customers: Series[int] = pa.Field(ge=1)
    share: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    k: Series[int] = pa.Field(ge=2)
    silhouette: Series[float] = pa.Field(in_range={"min_value": -1, "max_value": 1})

    @pa.dataframe_check(error="a day's cluster shares add up to 1")
    def shares_add_up(cls, df: pd.DataFrame) -> Series[bool]:
        return (df.groupby("snapshot_date")["share"].transform("sum") - 1).abs() < 0.01

    class Config:
        coerce = True
        strict = False
        unique = ["snapshot_date", "cluster"]


class Lookalikes(pa.DataFrameModel):
    """Every customer (open leads included) outside the seed segment, scored by how closely their
    behaviour resembles the seed's: score 1 = most alike, rank 1 = first to target."""

    snapshot_date: Series[pd.Timestamp]
    seed_segment: Series[Text] = pa.Field(isin=list(RFM_SEGMENTS))
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    lifecycle_stage: Series[Text] = pa.Field(isin=list(STAGES))
    distance: Series[float] = pa.Field(ge=0)
    lookalike_score: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    rank: Series[int] = pa.Field(ge=1)

    @pa.dataframe_check(error="closer to the seed ranks higher")
    def rank_follows_distance(cls, df: pd.DataFrame) -> Series[bool]:
        d = df.sort_values(["snapshot_date", "rank"])
        ok = d.groupby("snapshot_date")["distance"].diff().fillna(0) >= 0
        return ok.reindex(df.index)

    class Config:
        coerce = True
        strict = False
        unique = ["snapshot_date", "customer_id"]


class ChannelAttribution(pa.DataFrameModel):
    """Each order of the day credited to marketing channels under first-touch, last-touch and
    linear rules (``direct`` when no touch preceded it)."""

    order_date: Series[pd.Timestamp]
    order_id: Series[Text] = pa.Field(str_length={"min_value": 1})
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    is_first_order: Series[bool]
    rule: Series[Text] = pa.Field(isin=list(ATTRIBUTION_RULES))
    channel: Series[Text] = pa.Field(str_length={"min_value": 2})
    credit: Series[float] = pa.Field(gt=0, le=1)
    revenue_credit: Series[float] = pa.Field(ge=0)

    @pa.dataframe_check(error="an order's credit adds up to 1 under every rule")
    def whole_order(cls, df: pd.DataFrame) -> Series[bool]:
        return (df.groupby(["order_id", "rule"])["credit"].transform("sum") - 1).abs() < 1e-4

    class Config:
        coerce = True
        strict = False
        unique = ["order_id", "rule", "channel"]
