"""Contracts of identity resolution and the golden records: pairs, weights, scores, links, review
queue, crosswalk, id changes, customers and their provenance, resolution quality."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.vocabularies import DECISIONS
from crm_platform.contracts.schemas.base import CUSTOMER_ID, E164, EMAIL, SYSTEM, Text


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
