"""Contracts of the alerts stage: customer and KPI alerts, the delivery log, the uplift of treated
against control."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.schemas.base import ALERT_ID, CUSTOMER_ID, Text


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
