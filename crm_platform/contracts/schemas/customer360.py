"""Contracts of the customer timeline."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.vocabularies import EVENT_TYPES
from crm_platform.contracts.schemas.base import CUSTOMER_ID, SYSTEM, Text


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



CUSTOMER360_SCHEMAS: dict[tuple[str, str], type[pa.DataFrameModel]] = {
    ("core", "customer_events"): CustomerEvents, ("core", "unattributed_events"): UnattributedEvents,
}
CUSTOMER360_BLOCKING = {("core", "customer_events")}
