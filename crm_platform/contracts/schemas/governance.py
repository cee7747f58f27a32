"""Contracts of governance: the suppression list, requests, the erasure list, the audit log, the id
watermark."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.schemas.base import ALERT_ID, CUSTOMER_ID, Text


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
