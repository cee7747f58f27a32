"""What each column of the tables the business reads means: the one place for column
descriptions of the golden records, the feature snapshots, the segments and the scores.

The Dagster column schema of every warehouse table (``assets/lib/metadata.table_metadata``) takes its
descriptions from here; a column of a canonical entity (staging tables, the golden record's
contact fields) falls back to the canonical model's ``doc`` (crm_platform/contracts/entities.py). Windowed
feature names (``frequency_90d``) are matched by pattern, so a configured window gets its text
too. ``describe`` returns "" for a column nobody described, and a test holds that every column of
the golden records, the features and the scores has a description.
"""

from __future__ import annotations

import re

from crm_platform.contracts.entities import ENTITIES

SHARED = {
    "snapshot_date": "the day this row describes, as known at the end of that day (point in time)",
    "customer_id": "the stable golden customer id (identity.crosswalk); never reused",
    "model_version": "the registered model version that produced the score (models/<task>/<version>)",
}

DESCRIPTIONS: dict[str, dict[str, str]] = {
    # the contact fields: the canonical model's doc, plus the survivorship rule that chose them
    "core.customers": {
        "salutation": "salutation (Herr, Frau, ...)",
        "first_name": "first name",
        "last_name": "last name",
        "birth_date": "date of birth",
        "email": "e-mail address, lower-cased",
        "phone": "phone number in E.164 form (+49...)",
        "postcode": "postcode",
        "city": "city",
        "country": "ISO 3166 country code",
        "consent_email": "e-mail marketing consent (null: unknown, which counts as no)",
        "consent_phone": "phone marketing consent (null: unknown)",
        "shop_customer_no": "the shop's customer number, when a shop account is linked",
        "source_records": "how many source records were merged into this customer",
        "source_systems": "the systems those records came from",
        "first_seen_at": "when the earliest linked record was created",
        "last_updated_at": "when the newest linked record was last changed",
        "_built_at": "when the platform built this row",
    },
    "features.customer_features": {
        "tenure_days": "days since the customer was first seen",
        "recency_days": "days since the last order (null: never ordered)",
        "orders_total": "orders placed, all time",
        "revenue_total": "order value in EUR, all time (before returns)",
        r"frequency_(\d+)d": "orders placed in the last {0} days",
        r"monetary_(\d+)d": "order value in EUR in the last {0} days",
        "avg_order_value": "revenue_total / orders_total (null: never ordered)",
        "return_rate": "returned value / order value, all time",
        "discount_share": "discount / (order value + discount), all time",
        "category_breadth": "distinct product categories ordered, all time",
        r"emails_sent_(\d+)d": "marketing e-mails sent in the last {0} days",
        r"email_open_rate_(\d+)d": "share of the e-mails of the last {0} days opened",
        r"email_click_rate_(\d+)d": "share of the e-mails of the last {0} days clicked",
        "unsubscribed": "unsubscribed from e-mail by the end of the day",
        "tickets_total": "support tickets opened, all time",
        "tickets_open": "support tickets opened and not closed by the end of the day",
        "tickets_escalated": "support tickets closed as escalated, all time",
        "satisfaction_avg": "mean satisfaction rating of closed tickets (1-5), all time",
        "nps_last": "the latest NPS answer (0-10)",
        "nps_avg": "mean of all NPS answers (0-10)",
        r"web_sessions_(\d+)d": "web sessions attributed to the customer in the last {0} days",
        r"cart_abandonments_(\d+)d": "web sessions of the last {0} days with an add-to-cart and no checkout",
        "lead_channel": "the channel of the customer's first sales lead (null: never a lead)",
        "engagement_score": "weighted engagement across channels (config/features.yaml engagement_weights)",
        "latest_event_known_at": "when the newest event this row reads became known (always before the day's end)",
    },
    "marts.customer_segments": {
        "lifecycle_stage": "the stage at the end of the day: lead, first_time_buyer, repeat_buyer, loyal, at_risk or churned (config/segments.yaml)",
        "stage_since": "when the customer entered the current stage",
        "recency_days": "days since the last order in the RFM window (null: none)",
        "frequency": "orders in the RFM window (config/segments.yaml rfm_window_days)",
        "monetary": "order value in EUR in the RFM window",
        "rfm_r": "recency quintile 1-5 among the window's buyers (5: most recent)",
        "rfm_f": "frequency quintile 1-5 among the window's buyers",
        "rfm_m": "monetary quintile 1-5 among the window's buyers",
        "rfm_segment": "the named RFM segment of the R and F-M grid (champions, loyal, at risk, ...)",
        "rfm_note": "why the customer has no RFM score (null: scored)",
    },
    "ml.churn_scores": {
        "churn_probability": "probability of no order within the churn horizon (config/models.yaml horizon_days)",
        "risk_band": "high / medium / low by the thresholds in config/models.yaml risk_bands",
    },
    "ml.clv_scores": {
        "probability_alive": "probability that the customer still buys (BG/NBD or Pareto/NBD)",
        "expected_purchases": "expected orders in the next 12 months",
        r"expected_purchases_(\d+)d": "expected orders in the next {0} days (config/models.yaml clv_horizons_days)",
        "clv_12m": "predicted net revenue in EUR of the next 12 months",
        "clv_12m_low": "lower end of the 80 % interval of clv_12m",
        "clv_12m_high": "upper end of the 80 % interval of clv_12m",
        "expected_next_order_date": "the day the next order is expected",
    },
    "ml.next_best_offer": {
        "offer_rank": "1 for the best offer, then 2, 3",
        "category": "the product category offered",
        "offer_probability": "probability of ordering from the category within the horizon",
        "suppressed_categories": "candidate categories held back by the offer rules (e.g. a recent return)",
    },
    "ml.lead_scores": {
        "lead_id": "the lead's id in the sales pipeline",
        "conversion_probability": "probability that the lead converts into a customer",
        "top_reasons": "the features that moved this lead's score most",
    },
}


def _canonical() -> dict[str, str]:
    docs = {}
    for entity in ENTITIES.values():
        for col in entity.columns:
            if col.doc:
                docs.setdefault(col.name, col.doc)
    return docs


_CANONICAL = _canonical()


def describe(table: str, column: str) -> str:
    """The description of ``table.column``, or "" when none is known."""
    text = _own(table, column) or SHARED.get(column) or _CANONICAL.get(column, "")
    rule = _survivorship().get(column) if table == "core.customers" else None
    if rule:
        text = f"{text}; chosen by survivorship: {rule} (config/survivorship.yaml)".lstrip("; ")
    return text


def _own(table: str, column: str) -> str:
    own = DESCRIPTIONS.get(table, {})
    if column in own:
        return own[column]
    for pattern, text in own.items():
        m = re.fullmatch(pattern, column) if "(" in pattern else None
        if m:
            return text.format(*m.groups())
    return ""


def _survivorship() -> dict[str, str]:
    """Golden column -> the rule that fills it, as configured now."""
    from crm_platform.core import settings
    from crm_platform.golden.survivorship import load_rules

    return {out: rule.rule for rule in load_rules(settings.survivorship_file()) for out in rule.outputs}
