"""Contracts of the staging layer: one model per canonical entity, unioned over all systems, and
the build state of staging."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.core.standardize import postcode_valid
from crm_platform.contracts.schemas.base import E164, EMAIL, SYSTEM, Text


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
