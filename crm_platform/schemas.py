"""Pandera contracts of the staging tables, one ``DataFrameModel`` each, in one module.

``assets/checks.py`` turns every model into an asset check through one factory. Keys declared in
``Config.unique`` are checked over the whole table in SQL, the rest chunk by chunk.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

E164 = r"^\+[1-9]\d{6,14}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
SYSTEM = r"^[a-z][a-z0-9_]*$"


class _Lineage(pa.DataFrameModel):
    source_system: Series[str] = pa.Field(str_matches=SYSTEM)
    dataset: Series[str]
    # Lineage columns start with an underscore, which Pandera keeps for private names: use aliases.
    source_file: Series[str] = pa.Field(alias="_source_file")
    file_version: Series[int] = pa.Field(alias="_file_version", ge=1)
    source_line: Series[int] = pa.Field(alias="_source_line", ge=1)
    loaded_at: Series[pd.Timestamp] = pa.Field(alias="_loaded_at")

    class Config:
        coerce = True
        strict = False


class Contacts(_Lineage):
    """Every person record from every system, with match forms beside the display values."""

    contact_key: Series[str]
    record_kind: Series[str] = pa.Field(
        isin=["customer", "subscriber", "requester", "lead_contact", "respondent", "contact"])
    source_record_id: Series[str] = pa.Field(str_length={"min_value": 1})
    trust_rank: Series[int] = pa.Field(ge=1)
    first_name: Series[str] = pa.Field(nullable=True)
    last_name: Series[str] = pa.Field(nullable=True)
    first_name_std: Series[str] = pa.Field(nullable=True, str_matches=r"^[a-z][a-z\- ]*$")
    last_name_std: Series[str] = pa.Field(nullable=True, str_matches=r"^[a-z][a-z\- ]*$")
    email_std: Series[str] = pa.Field(nullable=True, str_matches=EMAIL)
    phone_e164: Series[str] = pa.Field(nullable=True, str_matches=E164)
    street_std: Series[str] = pa.Field(nullable=True)
    postcode: Series[str] = pa.Field(nullable=True, str_matches=r"^\d{4,10}$")
    country: Series[str] = pa.Field(str_matches=r"^[A-Z]{2}$")
    birth_date: Series[pd.Timestamp] = pa.Field(nullable=True, ge=pd.Timestamp("1900-01-01"))
    created_at: Series[pd.Timestamp] = pa.Field(nullable=True)
    consent_email: Series[pd.BooleanDtype] = pa.Field(nullable=True)

    @pa.dataframe_check(error="a record without e-mail, phone or name cannot be identified")
    def identifiable(cls, df: pd.DataFrame) -> Series[bool]:
        return df["email_std"].notna() | df["phone_e164"].notna() | df["last_name_std"].notna()

    @pa.dataframe_check(error="German postcodes have five digits")
    def german_postcode(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["country"] != "DE") | df["postcode"].isna() | (df["postcode"].str.len() == 5)

    class Config:
        unique = ["contact_key"]


class Orders(_Lineage):
    contact_key: Series[str]
    order_id: Series[str]
    customer_ref: Series[str]
    ordered_at: Series[pd.Timestamp]
    status: Series[str] = pa.Field(nullable=True, isin=["completed", "cancelled", "returned",
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
    order_id: Series[str]
    line_number: Series[int] = pa.Field(ge=1)
    sku: Series[str]
    category: Series[str] = pa.Field(nullable=True)
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
    contact_key: Series[str]
    event_id: Series[str]
    subscriber_ref: Series[str]
    event_type: Series[str] = pa.Field(isin=["send", "open", "click", "unsubscribe", "bounce"])
    occurred_at: Series[pd.Timestamp]

    class Config:
        unique = ["source_system", "event_id"]


class SupportTickets(_Lineage):
    contact_key: Series[str]
    ticket_id: Series[str]
    opened_at: Series[pd.Timestamp]
    closed_at: Series[pd.Timestamp] = pa.Field(nullable=True)
    status: Series[str] = pa.Field(nullable=True, isin=["open", "pending", "solved", "closed"])
    priority: Series[str] = pa.Field(nullable=True, isin=["low", "normal", "high", "urgent"])
    satisfaction_score: Series[float] = pa.Field(nullable=True, ge=1, le=5)

    @pa.dataframe_check(error="ticket closed before it was opened")
    def closed_after_opened(cls, df: pd.DataFrame) -> Series[bool]:
        return df["closed_at"].isna() | (df["closed_at"] >= df["opened_at"])

    class Config:
        unique = ["source_system", "ticket_id"]


class WebEvents(_Lineage):
    contact_key: Series[str] = pa.Field(nullable=True)
    event_id: Series[str]
    visitor_id: Series[str]
    occurred_at: Series[pd.Timestamp]
    event_type: Series[str] = pa.Field(isin=["page_view", "product_view", "add_to_cart", "checkout",
                                             "login"])

    class Config:
        unique = ["source_system", "event_id"]


class NpsResponses(_Lineage):
    contact_key: Series[str]
    response_id: Series[str]
    submitted_at: Series[pd.Timestamp]
    score: Series[int] = pa.Field(ge=0, le=10)
    comment: Series[str] = pa.Field(nullable=True)

    class Config:
        unique = ["source_system", "response_id"]


class Leads(_Lineage):
    contact_key: Series[str]
    lead_id: Series[str]
    stage: Series[str] = pa.Field(isin=["new", "contacted", "qualified", "proposal", "won", "lost"])
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
    channel: Series[str] = pa.Field(str_length={"min_value": 1})
    amount: Series[float] = pa.Field(ge=0, le=10_000_000)

    class Config:
        unique = ["source_system", "spend_date", "channel", "campaign"]


STAGING_SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "contacts": Contacts, "orders": Orders, "order_items": OrderItems, "email_events": EmailEvents,
    "support_tickets": SupportTickets, "web_events": WebEvents, "nps_responses": NpsResponses,
    "leads": Leads, "marketing_spend": MarketingSpend,
}
# Tables whose violations would corrupt identity resolution and everything keyed on it.
BLOCKING = {"contacts", "orders", "order_items"}
