"""Pandera contracts of the warehouse tables, one ``DataFrameModel`` each, in one module.

``assets/lib/checks.py`` turns every model into an asset check through one factory. Keys declared in
``Config.unique`` are checked over the whole table in SQL, the rest chunk by chunk.
"""

from __future__ import annotations

import re

import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from crm_platform.contracts.regex_check import all_text
from crm_platform.contracts.vocabularies import (ACTIVE, ATTRIBUTION_RULES, DECISIONS, EVENT_TYPES, KPIS,
                                                 RFM_SEGMENTS, STAGES)
from crm_platform.core.standardize import postcode_valid


@pandas_engine.Engine.register_dtype
@dtypes.immutable
class Text(pandas_engine.NpString):
    """Pandera's ``str``, checked in one vectorised pass. Pandera's own check (and coercion) calls
    Python once per value - 6-7 s per validation of a million-row sample of the event tables. A
    column whose values are all strings or empty passes at once; any other goes through Pandera's
    own check, so its failure cases read the same."""

    def coerce(self, data_container):
        return data_container if all_text(data_container) else super().coerce(data_container)

    def check(self, pandera_dtype, data_container=None):
        if data_container is not None and all_text(data_container):
            return True
        return super().check(pandera_dtype, data_container)


E164 = r"^\+[1-9]\d{6,14}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
SYSTEM = r"^[a-z][a-z0-9_]*$"


class _Lineage(pa.DataFrameModel):
    source_system: Series[Text] = pa.Field(str_matches=SYSTEM)
    dataset: Series[Text]
    # Lineage columns start with an underscore, which Pandera keeps for private names: use aliases.
    source_file: Series[Text] = pa.Field(alias="_source_file")
    file_version: Series[int] = pa.Field(alias="_file_version", ge=1)
    source_line: Series[int] = pa.Field(alias="_source_line", ge=1)
    loaded_at: Series[pd.Timestamp] = pa.Field(alias="_loaded_at")

    class Config:
        coerce = True
        strict = False


class Contacts(_Lineage):
    """Every person record from every system, with match forms beside the display values."""

    contact_key: Series[Text]
    record_kind: Series[Text] = pa.Field(
        isin=["customer", "subscriber", "requester", "lead_contact", "respondent", "contact"])
    source_record_id: Series[Text] = pa.Field(str_length={"min_value": 1})
    trust_rank: Series[int] = pa.Field(ge=1)
    first_name: Series[Text] = pa.Field(nullable=True)
    last_name: Series[Text] = pa.Field(nullable=True)
    first_name_std: Series[Text] = pa.Field(nullable=True, str_matches=r"^[a-z][a-z\- ]*$")
    last_name_std: Series[Text] = pa.Field(nullable=True, str_matches=r"^[a-z][a-z\- ]*$")
    first_name_phonetic: Series[Text] = pa.Field(nullable=True, str_matches=r"^[A-Z0]+$")
    last_name_phonetic: Series[Text] = pa.Field(nullable=True, str_matches=r"^[A-Z0]+$")
    national_id: Series[Text] = pa.Field(nullable=True, str_matches=r"^[0-9A-Z]+$")
    email_std: Series[Text] = pa.Field(nullable=True, str_matches=EMAIL)
    phone_e164: Series[Text] = pa.Field(nullable=True, str_matches=E164)
    street_std: Series[Text] = pa.Field(nullable=True)
    postcode: Series[Text] = pa.Field(nullable=True)
    country: Series[Text] = pa.Field(str_matches=r"^[A-Z]{2}$")
    birth_date: Series[pd.Timestamp] = pa.Field(nullable=True, ge=pd.Timestamp("1900-01-01"))
    created_at: Series[pd.Timestamp] = pa.Field(nullable=True)
    consent_email: Series[pd.BooleanDtype] = pa.Field(nullable=True)

    @pa.dataframe_check(error="a postcode in its country's form (DE 01067, GB SW1A 1AA, NL 1234 AB)")
    def postcode_fits_country(cls, df: pd.DataFrame) -> Series[bool]:
        pairs = zip(df["postcode"].tolist(), df["country"].tolist())
        return pd.Series([postcode_valid(p, c) for p, c in pairs], index=df.index, dtype=bool)

    class Config:
        unique = ["contact_key"]


class Orders(_Lineage):
    contact_key: Series[Text]
    order_id: Series[Text]
    customer_ref: Series[Text]
    ordered_at: Series[pd.Timestamp]
    status: Series[Text] = pa.Field(nullable=True, isin=["completed", "cancelled", "returned",
                                                        "partially_returned"])
    total_amount: Series[float] = pa.Field(ge=0)
    discount_amount: Series[float] = pa.Field(nullable=True, ge=0)
    shipping_amount: Series[float] = pa.Field(nullable=True, ge=0)

    @pa.dataframe_check(error="discount larger than the order total plus discount")
    def discount_within_total(cls, df: pd.DataFrame) -> Series[bool]:
        return df["discount_amount"].isna() | (df["discount_amount"] <= df["total_amount"] + df["discount_amount"].abs() + 1e-6)

    class Config:
        unique = ["source_system", "order_id"]


class OrderItems(_Lineage):
    order_id: Series[Text]
    line_number: Series[int] = pa.Field(ge=1)
    sku: Series[Text]
    category: Series[Text] = pa.Field(nullable=True)
    quantity: Series[int] = pa.Field(ge=1, le=10_000)
    unit_price: Series[float] = pa.Field(ge=0)
    returned: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    returned_at: Series[pd.Timestamp] = pa.Field(nullable=True)

    @pa.dataframe_check(error="a return date on a line that is not returned")
    def return_date_needs_return(cls, df: pd.DataFrame) -> Series[bool]:
        return df["returned_at"].isna() | df["returned"].fillna(False).astype(bool)

    class Config:
        unique = ["source_system", "order_id", "line_number"]


class EmailEvents(_Lineage):
    contact_key: Series[Text]
    event_id: Series[Text]
    subscriber_ref: Series[Text]
    event_type: Series[Text] = pa.Field(isin=["send", "open", "click", "unsubscribe", "bounce"])
    occurred_at: Series[pd.Timestamp]

    class Config:
        unique = ["source_system", "event_id"]


class SupportTickets(_Lineage):
    contact_key: Series[Text]
    ticket_id: Series[Text]
    opened_at: Series[pd.Timestamp]
    closed_at: Series[pd.Timestamp] = pa.Field(nullable=True)
    status: Series[Text] = pa.Field(nullable=True, isin=["open", "pending", "solved", "closed"])
    priority: Series[Text] = pa.Field(nullable=True, isin=["low", "normal", "high", "urgent"])
    satisfaction_score: Series[float] = pa.Field(nullable=True, ge=1, le=5)

    @pa.dataframe_check(error="ticket closed before it was opened")
    def closed_after_opened(cls, df: pd.DataFrame) -> Series[bool]:
        return df["closed_at"].isna() | (df["closed_at"] >= df["opened_at"])

    class Config:
        unique = ["source_system", "ticket_id"]


class WebEvents(_Lineage):
    contact_key: Series[Text] = pa.Field(nullable=True)
    event_id: Series[Text]
    visitor_id: Series[Text]
    occurred_at: Series[pd.Timestamp]
    event_type: Series[Text] = pa.Field(isin=["page_view", "product_view", "add_to_cart", "checkout",
                                             "login"])

    class Config:
        unique = ["source_system", "event_id"]


class NpsResponses(_Lineage):
    contact_key: Series[Text]
    response_id: Series[Text]
    submitted_at: Series[pd.Timestamp]
    score: Series[int] = pa.Field(ge=0, le=10)
    comment: Series[Text] = pa.Field(nullable=True)

    class Config:
        unique = ["source_system", "response_id"]


class Leads(_Lineage):
    contact_key: Series[Text]
    lead_id: Series[Text]
    stage: Series[Text] = pa.Field(isin=["new", "contacted", "qualified", "proposal", "won", "lost"])
    expected_value: Series[float] = pa.Field(nullable=True, ge=0)
    created_at: Series[pd.Timestamp]
    converted_at: Series[pd.Timestamp] = pa.Field(nullable=True)

    @pa.dataframe_check(error="a lead marked won needs a conversion time, and only won leads have one")
    def conversion_matches_stage(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["stage"] == "won") == df["converted_at"].notna()

    class Config:
        unique = ["source_system", "lead_id"]


class MarketingSpend(_Lineage):
    spend_date: Series[pd.Timestamp]
    channel: Series[Text] = pa.Field(str_length={"min_value": 1})
    amount: Series[float] = pa.Field(ge=0, le=10_000_000)

    class Config:
        unique = ["source_system", "spend_date", "channel", "campaign"]


class StagingBuildState(pa.DataFrameModel):
    """Which file versions a staging table was built from (crm_platform.staging.tables, incremental builds):
    one row per entity and file, its version the one staged, one query fingerprint per entity."""

    entity: Series[Text] = pa.Field(isin=["contacts", "orders", "order_items", "email_events", "support_tickets",
                                         "web_events", "nps_responses", "leads", "marketing_spend"])
    dataset: Series[Text] = pa.Field(str_matches=SYSTEM)
    source_file: Series[Text] = pa.Field(str_length={"min_value": 1})
    version: Series[int] = pa.Field(ge=1)
    query_hash: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    built_at: Series[pd.Timestamp]

    @pa.dataframe_check(error="one staging query per entity")
    def one_query(cls, df: pd.DataFrame) -> Series[bool]:
        return df.groupby("entity")["query_hash"].transform("nunique") == 1

    class Config:
        coerce = True
        strict = True
        unique = ["entity", "dataset", "source_file"]


STAGING_SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "contacts": Contacts, "orders": Orders, "order_items": OrderItems, "email_events": EmailEvents,
    "support_tickets": SupportTickets, "web_events": WebEvents, "nps_responses": NpsResponses,
    "leads": Leads, "marketing_spend": MarketingSpend,
}
# Tables whose violations would corrupt identity resolution and everything keyed on it.
BLOCKING = {"contacts", "orders", "order_items"}


# --- identity and core ---------------------------------------------------------------------------

CUSTOMER_ID = r"^C\d{9}$"
MODEL_VERSION = r"^v\d{4}$"   # a registry version (crm_platform/ml/registry.py)
PAIR_DECISIONS = list(DECISIONS)


class _Pair(pa.DataFrameModel):
    left_id: Series[Text] = pa.Field(str_length={"min_value": 1})
    right_id: Series[Text] = pa.Field(str_length={"min_value": 1})

    @pa.dataframe_check(error="a record is never paired with itself")
    def distinct_sides(cls, df: pd.DataFrame) -> Series[bool]:
        return df["left_id"] != df["right_id"]

    class Config:
        coerce = True
        strict = False
        unique = ["left_id", "right_id"]


class CandidatePairs(_Pair):
    """Pairs proposed by blocking, each once, with the first rule that proposed it."""

    built_at: Series[pd.Timestamp] = pa.Field(alias="_built_at")   # when the platform built the row
    blocking_rule: Series[Text] = pa.Field(str_length={"min_value": 1})
    rule_mask: Series[int] = pa.Field(ge=1)


class MatchWeights(pa.DataFrameModel):
    """The Fellegi-Sunter model: m and u probability and weight of every comparison level."""

    comparison: Series[Text]
    gamma: Series[int] = pa.Field(ge=-1)
    level: Series[Text]
    m_probability: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    u_probability: Series[float] = pa.Field(nullable=True, gt=0, le=1)
    weight_bits: Series[float]
    context: Series[Text]                 # '' for the main model, else the context whose model it is
    context_match_probability: Series[float] = pa.Field(nullable=True, gt=0, lt=1)
    prior_match_probability: Series[float] = pa.Field(gt=0, lt=1)
    model: Series[Text] = pa.Field(isin=["fellegi_sunter_em", "recordlinkage_logistic_regression"])
    # what the model was trained under: an incremental match reuses it only while both hold
    spec_hash: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    decisions_hash: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    source_generation: Series[Text]       # the build of the input it was trained on
    trained_at: Series[pd.Timestamp]

    @pa.dataframe_check(error="one model per table")
    def one_model(cls, df: pd.DataFrame) -> Series[bool]:
        return (df[["prior_match_probability", "model", "spec_hash", "decisions_hash", "source_generation",
                    "trained_at"]].nunique() <= 1).all() \
            & pd.Series(True, index=df.index)

    @pa.dataframe_check(error="m and u probabilities of a comparison sum to 1")
    def distributions(cls, df: pd.DataFrame) -> Series[bool]:
        sums = df[df.gamma >= 0].groupby(["context", "comparison"])[["m_probability", "u_probability"]].transform("sum")
        ok = ((sums - 1).abs() < 1e-6).all(axis=1)
        return ok.reindex(df.index, fill_value=True)

    class Config:
        coerce = True
        strict = False
        unique = ["context", "comparison", "gamma"]


class PairScores(_Pair):
    """Every compared pair: comparison vector, per-field weights, probability and decision."""

    built_at: Series[pd.Timestamp] = pa.Field(alias="_built_at")   # when the platform built the row
    blocking_rule: Series[Text]
    total_weight: Series[float]
    match_probability: Series[float] = pa.Field(ge=0, le=1)
    decision: Series[Text] = pa.Field(isin=PAIR_DECISIONS)


class Links(PairScores):
    """Links the clustering considered, strongest first, and whether a guard refused them."""

    decision: Series[Text] = pa.Field(isin=["must_link", "deterministic", "link"])
    outcome: Series[Text] = pa.Field(str_matches=r"^(accepted|refused: [a-z_]+)$")


class ReviewQueue(_Pair):
    """Uncertain pairs of different customers, side by side, waiting for a reviewer."""

    match_probability: Series[float] = pa.Field(ge=0, le=1)
    decision: Series[Text] = pa.Field(nullable=True)


class Crosswalk(pa.DataFrameModel):
    """Every staged contact record mapped to exactly one customer id."""

    contact_key: Series[Text]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    dataset: Series[Text]
    source_system: Series[Text] = pa.Field(str_matches=SYSTEM)
    source_record_id: Series[Text] = pa.Field(str_length={"min_value": 1})
    cluster_size: Series[int] = pa.Field(ge=1)
    resolved_at: Series[pd.Timestamp]

    @pa.dataframe_check(error="cluster_size is the number of records of the customer")
    def sizes(cls, df: pd.DataFrame) -> Series[bool]:
        return df.groupby("customer_id")["contact_key"].transform("size") <= df["cluster_size"]

    class Config:
        coerce = True
        strict = False
        unique = ["contact_key"]


class IdChanges(pa.DataFrameModel):
    """History of customer id merges, splits and moves, for downstream tools to follow."""

    old_customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    new_customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    kind: Series[Text] = pa.Field(isin=["merge", "split", "move"])
    records: Series[int] = pa.Field(ge=1)
    evidence: Series[Text] = pa.Field(str_startswith="{")
    changed_at: Series[pd.Timestamp]

    @pa.dataframe_check(error="an id change changes the id")
    def changes(cls, df: pd.DataFrame) -> Series[bool]:
        return df["old_customer_id"] != df["new_customer_id"]

    class Config:
        coerce = True
        strict = False


class Customers(pa.DataFrameModel):
    """Golden customer records: one row per customer id, fields chosen by survivorship."""

    built_at: Series[pd.Timestamp] = pa.Field(alias="_built_at")   # when the platform built the row
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID, unique=True)
    email: Series[Text] = pa.Field(nullable=True, str_matches=EMAIL)
    phone: Series[Text] = pa.Field(nullable=True, str_matches=E164)
    birth_date: Series[pd.Timestamp] = pa.Field(nullable=True, ge=pd.Timestamp("1900-01-01"))
    consent_email: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    source_records: Series[int] = pa.Field(ge=1)

    class Config:
        coerce = True
        strict = False


class BuildState(pa.DataFrameModel):
    """What each incrementally built core table reflects (crm_platform.contracts.buildstate): one row per
    building step with the fingerprint of its rules or query and the newest resolution and load
    taken in."""

    step: Series[Text] = pa.Field(isin=["golden_records", "customer_timeline"])
    fingerprint: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    resolved_through: Series[pd.Timestamp] = pa.Field(nullable=True)
    loaded_through: Series[pd.Timestamp] = pa.Field(nullable=True)
    built_at: Series[pd.Timestamp]

    class Config:
        coerce = True
        strict = True
        unique = ["step"]


class CustomerFieldProvenance(pa.DataFrameModel):
    """Which staged record and which survivorship rule supplied each golden field."""

    built_at: Series[pd.Timestamp] = pa.Field(alias="_built_at")   # when the platform built the row
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    field: Series[Text]
    value: Series[Text]
    source_contact_key: Series[Text] = pa.Field(str_length={"min_value": 3})
    source_dataset: Series[Text]
    rule: Series[Text] = pa.Field(isin=["trust_rank", "most_recent", "most_frequent", "longest",
                                       "most_restrictive"])

    class Config:
        coerce = True
        strict = False
        unique = ["customer_id", "field"]


class ResolutionQuality(pa.DataFrameModel):
    """Quality figures of the latest resolution, against truth or descriptive."""

    metric: Series[Text] = pa.Field(unique=True)
    value: Series[float] = pa.Field(ge=0)
    measured_against: Series[Text] = pa.Field(isin=["generator truth", "description"])

    @pa.dataframe_check(error="precision, recall and F1 lie between 0 and 1")
    def rates(cls, df: pd.DataFrame) -> Series[bool]:
        rate = df["metric"].str.contains("precision|recall|f1|rate")
        return ~rate | df["value"].between(0, 1)

    class Config:
        coerce = True
        strict = False


class CustomerEvents(pa.DataFrameModel):
    """The 360° timeline: one row per interaction of a golden customer, from every silo."""

    built_at: Series[pd.Timestamp] = pa.Field(alias="_built_at")   # when the platform built the row
    event_id: Series[Text] = pa.Field(str_length=32)
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    event_at: Series[pd.Timestamp]
    known_at: Series[pd.Timestamp]
    event_type: Series[Text] = pa.Field(isin=list(EVENT_TYPES))
    channel: Series[Text] = pa.Field(nullable=True)     # an order log may not say where it was placed
    # order totals, returned amounts, NPS and satisfaction scores, expected lead values
    value: Series[float] = pa.Field(nullable=True, ge=0)
    discount: Series[float] = pa.Field(nullable=True, ge=0)
    source_system: Series[Text] = pa.Field(str_matches=SYSTEM)
    dataset: Series[Text]
    source_record_id: Series[Text] = pa.Field(str_length={"min_value": 1})

    @pa.dataframe_check(error="an event is known no earlier than it happened")
    def known_after_it_happened(cls, df: pd.DataFrame) -> Series[bool]:
        return df["known_at"] >= df["event_at"]

    @pa.dataframe_check(error="NPS answers score 0 to 10")
    def nps_scale(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["event_type"] != "nps_answer") | df["value"].between(0, 10)

    class Config:
        coerce = True
        strict = False
        unique = ["event_id"]


class UnattributedEvents(pa.DataFrameModel):
    """Activity rows no customer could be given, each with the reason (anonymous web traffic is
    counted in metadata, not listed)."""

    source_system: Series[Text] = pa.Field(str_matches=SYSTEM)
    dataset: Series[Text]
    source_record_id: Series[Text] = pa.Field(str_length={"min_value": 1})
    event_type: Series[Text] = pa.Field(isin=list(EVENT_TYPES))
    reason: Series[Text] = pa.Field(str_length={"min_value": 5})

    class Config:
        coerce = True
        strict = False


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


CUSTOMER360_SCHEMAS: dict[tuple[str, str], type[pa.DataFrameModel]] = {
    ("core", "customer_events"): CustomerEvents, ("core", "unattributed_events"): UnattributedEvents,
}
CUSTOMER360_BLOCKING = {("core", "customer_events")}


IDENTITY_SCHEMAS: dict[tuple[str, str], type[pa.DataFrameModel]] = {
    ("identity", "candidate_pairs"): CandidatePairs, ("identity", "match_weights"): MatchWeights,
    ("identity", "pair_scores"): PairScores, ("identity", "links"): Links,
    ("identity", "review_queue"): ReviewQueue, ("identity", "crosswalk"): Crosswalk,
    ("identity", "id_changes"): IdChanges, ("core", "customers"): Customers,
    ("core", "customer_field_provenance"): CustomerFieldProvenance,
    ("identity", "resolution_quality"): ResolutionQuality,
}
# Tables that may rightly be empty, and why: nothing uncertain to review, no id changed this run,
# no two records sharing a blocking key (a single system without duplicates, records known by
# their system's id alone), no golden field with a value.
MAY_BE_EMPTY = {
    ("identity", "review_queue"): "no uncertain pair to review",
    ("identity", "id_changes"): "no customer id changed this run",
    ("core", "unattributed_events"): "every activity row has its customer",
    ("identity", "candidate_pairs"): "no two contact records share a blocking key",
    ("identity", "match_weights"): "no comparable field: the contacts fill none of the match columns (names, "
                                   "birth date, e-mail, phone, address, identifiers)",
    ("identity", "pair_scores"): "no candidate pair to score",
    ("identity", "links"): "no pair scored as a link",
    ("core", "customer_field_provenance"): "no golden record has a field beyond its id",
}
IDENTITY_BLOCKING = {("identity", "crosswalk"), ("core", "customers")}


class ChurnScores(pa.DataFrameModel):
    """Churn probability and risk band of every customer with an order by the snapshot day, and
    the model version that scored it."""

    snapshot_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    churn_probability: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    risk_band: Series[Text] = pa.Field(isin=["low", "medium", "high"])
    model_version: Series[Text] = pa.Field(str_matches=MODEL_VERSION)

    @pa.dataframe_check(error="one model version per snapshot")
    def one_version(cls, df: pd.DataFrame) -> Series[bool]:
        return df.groupby("snapshot_date")["model_version"].transform("nunique") == 1

    class Config:
        coerce = True
        strict = True
        unique = ["snapshot_date", "customer_id"]


class ClvScores(pa.DataFrameModel):
    """Lifetime-value outlook of every customer with an order by the snapshot day, and the model
    version behind it."""

    snapshot_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    probability_alive: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    # one column per configured horizon (clv_horizons_days); a horizon dropped from the
    # configuration is empty from then on
    expected_purchases: Series[float] = pa.Field(alias=r"^expected_purchases_\d+d$", regex=True, ge=0, nullable=True)
    clv_12m: Series[float]
    clv_12m_low: Series[float]
    clv_12m_high: Series[float]
    expected_next_order_date: Series[pd.Timestamp] = pa.Field(nullable=True)
    model_version: Series[Text] = pa.Field(str_matches=MODEL_VERSION)

    @pa.dataframe_check(error="the interval holds the prediction")
    def interval(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["clv_12m_low"] <= df["clv_12m"] + 1e-6) & (df["clv_12m"] <= df["clv_12m_high"] + 1e-6)

    @pa.dataframe_check(error="more purchases are expected over a longer horizon than over a shorter one")
    def nested(cls, df: pd.DataFrame) -> Series[bool]:
        cols = sorted((c for c in df.columns if re.fullmatch(r"expected_purchases_\d+d", c)),
                      key=lambda c: int(c.split("_")[-1][:-1]))
        ok = pd.Series(True, index=df.index)
        for short, long in zip(cols, cols[1:]):
            ok &= df[short].isna() | df[long].isna() | (df[short] <= df[long] + 1e-9)
        return ok

    @pa.dataframe_check(error="expected purchases over at least one horizon")
    def some_horizon(cls, df: pd.DataFrame) -> Series[bool]:
        cols = [c for c in df.columns if re.fullmatch(r"expected_purchases_\d+d", c)]
        return df[cols].notna().any(axis=1) if cols else pd.Series(False, index=df.index)

    @pa.dataframe_check(error="the next order is expected after the snapshot day, within a year")
    def next_order(cls, df: pd.DataFrame) -> Series[bool]:
        d = df["expected_next_order_date"]
        return d.isna() | ((d > df["snapshot_date"]) & (d <= df["snapshot_date"] + pd.Timedelta(days=366)))

    class Config:
        coerce = True
        strict = True
        unique = ["snapshot_date", "customer_id"]


class NextBestOffer(pa.DataFrameModel):
    """Up to three ranked product categories per customer with an order: categories the customer
    does not keep yet, none returned from recently, and the model version that ranked them."""

    snapshot_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    offer_rank: Series[int] = pa.Field(isin=[1, 2, 3])
    category: Series[Text] = pa.Field(str_length={"min_value": 1})
    offer_probability: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    suppressed_categories: Series[Text] = pa.Field(nullable=True)
    model_version: Series[Text] = pa.Field(str_matches=MODEL_VERSION)

    @pa.dataframe_check(error="ranks of a customer run 1, 2, 3 by falling probability")
    def ranked(cls, df: pd.DataFrame) -> Series[bool]:
        g = df.sort_values(["snapshot_date", "customer_id", "offer_rank"]).groupby(["snapshot_date", "customer_id"])
        ok = (g["offer_rank"].diff().fillna(1) == 1) & (g["offer_probability"].diff().fillna(0) <= 1e-12)
        return ok.reindex(df.index)

    @pa.dataframe_check(error="a suppressed category is never offered")
    def not_suppressed(cls, df: pd.DataFrame) -> Series[bool]:
        return pd.Series([s is None or (isinstance(s, float) and pd.isna(s)) or c not in s.split(", ")
                          for c, s in zip(df["category"], df["suppressed_categories"])], index=df.index)

    class Config:
        coerce = True
        strict = True
        unique = ["snapshot_date", "customer_id", "offer_rank"]


class LeadScores(pa.DataFrameModel):
    """Conversion probability and top reasons of every sales lead open on the snapshot day, and
    the model version that scored it."""

    snapshot_date: Series[pd.Timestamp]
    lead_id: Series[Text] = pa.Field(str_length={"min_value": 1})
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    conversion_probability: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    top_reasons: Series[Text] = pa.Field(str_length={"min_value": 3})
    model_version: Series[Text] = pa.Field(str_matches=MODEL_VERSION)

    class Config:
        coerce = True
        strict = True
        unique = ["snapshot_date", "lead_id"]


class AtRiskCustomers(pa.DataFrameModel):
    """The dashboard's top at-risk high-value customers: ids and scores only, highest value at risk
    first, each customer once."""

    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID, unique=True)
    churn_probability: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    risk_band: Series[Text] = pa.Field(isin=["medium", "high"])
    predicted_clv_12m: Series[float] = pa.Field(gt=0)
    value_at_risk: Series[float] = pa.Field(ge=0)
    lifecycle_stage: Series[Text] = pa.Field(nullable=True, isin=list(STAGES))
    rfm_segment: Series[Text] = pa.Field(nullable=True, isin=list(RFM_SEGMENTS))
    next_best_offer: Series[Text] = pa.Field(nullable=True)

    @pa.dataframe_check(error="ordered by value at risk, highest first")
    def ordered(cls, df: pd.DataFrame) -> Series[bool]:
        return df["value_at_risk"].diff().fillna(0) <= 1e-9

    @pa.dataframe_check(error="value at risk is churn probability x predicted value")
    def product(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["value_at_risk"] - df["churn_probability"] * df["predicted_clv_12m"]).abs() \
            <= 0.01 + 0.001 * df["predicted_clv_12m"]

    class Config:
        coerce = True
        strict = True


ALERT_ID = r"^[0-9a-f]{24}$"
CUSTOMER_ALERT_KINDS = ["churn_risk", "lifecycle", "next_best_offer"]


class CustomerAlerts(pa.DataFrameModel):
    """The alerts raised about customers on a day, after consent, suppression and upsell rules;
    control-group alerts are kept (flagged) for the uplift measurement and never delivered."""

    alert_id: Series[Text] = pa.Field(str_matches=ALERT_ID)
    alert_date: Series[pd.Timestamp]
    customer_id: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)
    kind: Series[Text] = pa.Field(isin=CUSTOMER_ALERT_KINDS)
    reason: Series[Text] = pa.Field(str_length={"min_value": 10})
    model_version: Series[Text] = pa.Field(str_length={"min_value": 3})
    is_control: Series[bool]

    @pa.dataframe_check(error="a model-based alert names the model version behind it")
    def names_its_model(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["kind"] == "lifecycle") | df["model_version"].str.contains(r"v\d{4}", regex=True)

    class Config:
        coerce = True
        strict = True
        unique = ["alert_date", "alert_id"]


class KpiAlerts(pa.DataFrameModel):
    """KPIs of the whole base that left their expected band on a day, and data-quality alerts for
    failed checks."""

    alert_id: Series[Text] = pa.Field(str_matches=ALERT_ID)
    alert_date: Series[pd.Timestamp]
    kind: Series[Text] = pa.Field(isin=["kpi_band", "data_quality"])
    subject: Series[Text] = pa.Field(str_length={"min_value": 2})
    reason: Series[Text] = pa.Field(str_length={"min_value": 10})
    value: Series[float] = pa.Field(nullable=True)
    expected_low: Series[float] = pa.Field(nullable=True)
    expected_high: Series[float] = pa.Field(nullable=True)
    history_days: Series[float] = pa.Field(nullable=True, ge=0)

    @pa.dataframe_check(error="a KPI alert's value lies outside its band, with the band and its history")
    def outside_band(cls, df: pd.DataFrame) -> Series[bool]:
        kpi = df["kind"] == "kpi_band"
        return ~kpi | ((df["value"] < df["expected_low"]) | (df["value"] > df["expected_high"])) & df["history_days"].ge(2)

    class Config:
        coerce = True
        strict = True
        unique = ["alert_date", "alert_id"]


class DeliveryLog(pa.DataFrameModel):
    """What each sink took of the alerts of a day: sent now, already delivered before, failed
    (sent again on the next delivery), or the reason a sink was left out."""

    alert_date: Series[pd.Timestamp]
    sink: Series[Text] = pa.Field(str_length={"min_value": 1})
    alerts: Series[int] = pa.Field(ge=0)
    sent: Series[int] = pa.Field(ge=0)
    already_delivered: Series[int] = pa.Field(ge=0)
    failed: Series[int] = pa.Field(ge=0)
    note: Series[Text] = pa.Field(nullable=True)

    @pa.dataframe_check(error="every alert of the day is sent, already delivered or failed, per sink")
    def reconciles(cls, df: pd.DataFrame) -> Series[bool]:
        return df["note"].notna() | (df["sent"] + df["already_delivered"] + df["failed"] == df["alerts"])

    class Config:
        coerce = True
        strict = True
        unique = ["alert_date", "sink"]


class ActionUplift(pa.DataFrameModel):
    """Treated vs control outcomes per alert kind, as of the snapshot day, over alerts whose
    follow-up window has passed; the uplift is null (with a note) when a group is too small."""

    snapshot_date: Series[pd.Timestamp]
    kind: Series[Text] = pa.Field(isin=CUSTOMER_ALERT_KINDS)
    window_days: Series[int] = pa.Field(ge=1)
    treated_alerts: Series[int] = pa.Field(ge=0)
    control_alerts: Series[int] = pa.Field(ge=0)
    treated_order_rate: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})
    control_order_rate: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})
    treated_revenue: Series[float] = pa.Field(nullable=True)
    control_revenue: Series[float] = pa.Field(nullable=True)
    order_rate_uplift: Series[float] = pa.Field(nullable=True, in_range={"min_value": -1, "max_value": 1})
    order_rate_uplift_margin: Series[float] = pa.Field(nullable=True, ge=0)
    revenue_uplift: Series[float] = pa.Field(nullable=True)
    revenue_uplift_margin: Series[float] = pa.Field(nullable=True, ge=0)
    note: Series[Text] = pa.Field(nullable=True)

    @pa.dataframe_check(error="an uplift is reported, or the note says why not")
    def reported_or_explained(cls, df: pd.DataFrame) -> Series[bool]:
        return df["order_rate_uplift"].notna() != df["note"].notna()

    class Config:
        coerce = True
        strict = True
        unique = ["snapshot_date", "kind"]


class ContactSuppression(pa.DataFrameModel):
    """People nobody may contact: salted hashes of their normalized e-mail or customer id (no
    plain identifier is kept), and the customer they resolve to today."""

    identifier_hash: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{64}$")
    identifier_type: Series[Text] = pa.Field(isin=["email", "customer_id"])
    reason: Series[Text] = pa.Field(nullable=True)
    source_file: Series[Text]
    customer_id: Series[Text] = pa.Field(nullable=True, str_matches=CUSTOMER_ID)

    class Config:
        coerce = True
        strict = True
        unique = ["identifier_hash", "customer_id"]


class GovernanceRequests(pa.DataFrameModel):
    """Erasure and export requests received as files: pending until carried out, or invalid with
    the reason."""

    request_id: Series[Text] = pa.Field(str_matches=ALERT_ID, unique=True)
    source_file: Series[Text]
    request_type: Series[Text] = pa.Field(nullable=True)
    identifier_type: Series[Text] = pa.Field(nullable=True, isin=["email", "customer_id"])
    identifier: Series[Text] = pa.Field(nullable=True)
    requested_by: Series[Text] = pa.Field(nullable=True)
    received_at: Series[pd.Timestamp]
    status: Series[Text] = pa.Field(isin=["pending", "invalid", "done", "failed", "refused"])
    reason: Series[Text] = pa.Field(nullable=True)
    scope: Series[Text] = pa.Field(nullable=True, str_matches=r"^(all_matching|customer:C\d{9})$")

    @pa.dataframe_check(error="an invalid or refused request says why; a pending one has a type and an identifier")
    def explained(cls, df: pd.DataFrame) -> Series[bool]:
        pending = df["status"] == "pending"
        return (~pending | (df["request_type"].isin(["erase", "export"]) & df["identifier"].notna())) & (
            ~df["status"].isin(["invalid", "refused"]) | df["reason"].notna())

    class Config:
        coerce = True
        strict = True


class ErasedIdentifiers(pa.DataFrameModel):
    """The erasure list: salted SHA-256 hashes of the identifiers of erased people (never the
    identifiers), the request that erased them and the fingerprint of the salt used."""

    identifier_hash: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{64}$", unique=True)
    identifier_type: Series[Text] = pa.Field(isin=["email", "contact_key", "shop_customer_no", "visitor_id", "order_id"])
    request_id: Series[Text] = pa.Field(str_matches=ALERT_ID)
    erased_at: Series[pd.Timestamp]
    salt_id: Series[Text] = pa.Field(str_matches=r"^[0-9a-f]{12}$")

    @pa.dataframe_check(error="one list is hashed with one salt")
    def one_salt(cls, df: pd.DataFrame) -> bool:
        return df["salt_id"].nunique() <= 1

    class Config:
        coerce = True
        strict = True


class AuditLog(pa.DataFrameModel):
    """Every erasure, export, review decision and model promotion: when, who, what, outcome; the
    subject is a request id, a hash or a model version, never personal data."""

    logged_at: Series[pd.Timestamp]
    action: Series[Text] = pa.Field(isin=["erasure", "export", "review_decision", "model_promotion"])
    actor: Series[Text] = pa.Field(str_length={"min_value": 1})
    subject: Series[Text] = pa.Field(str_length={"min_value": 1})
    outcome: Series[Text] = pa.Field(str_length={"min_value": 1})
    details: Series[Text] = pa.Field(nullable=True)

    @pa.check("details", error="details hold no e-mail address")
    def no_email(cls, s: Series[Text]) -> Series[bool]:
        return ~s.fillna("").str.contains(r"[^@\s\"]+@[^@\s\"]+\.[A-Za-z]{2,}", regex=True)

    class Config:
        coerce = True
        strict = True


class IdWatermark(pa.DataFrameModel):
    """The highest customer id ever minted, kept when an erased customer's id leaves the registry
    (ids are never reused)."""

    last_minted: Series[Text] = pa.Field(str_matches=CUSTOMER_ID)

    class Config:
        coerce = True
        strict = True
        unique = ["last_minted"]
