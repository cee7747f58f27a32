"""Contracts of the daily scores of the models, and of the at-risk list the dashboard shows."""

from __future__ import annotations

import re

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.vocabularies import (RFM_SEGMENTS, STAGES)
from crm_platform.contracts.schemas.base import CUSTOMER_ID, MODEL_VERSION, Text


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
