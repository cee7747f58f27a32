"""The closed vocabularies of the warehouse: the values a column of a contract may hold.

The stages that produce these values and the Pandera models that check them both read them
from here, so a contract never has to import the stage it checks.
"""
from __future__ import annotations

# a candidate pair's decision (identity resolution), strongest first
DECISIONS = ("must_link", "deterministic", "link", "review", "no_link", "cannot_link")

# the event types of the 360° timeline (core.customer_events)
EVENT_TYPES = ("order", "order_cancelled", "return", "email_send", "email_open", "email_click",
               "email_unsubscribe", "email_bounce", "ticket_opened", "ticket_closed", "ticket_closed_escalated",
               "nps_answer", "lead_created", "lead_converted", "web_page_view", "web_product_view",
               "web_add_to_cart", "web_checkout", "web_login")

# KPI -> (unit, is a share in [0, 1])
KPIS = {
    "active_customers": ("customers", False), "churn_rate": ("share", True), "retention_rate": ("share", True),
    "orders": ("orders", False), "revenue": ("EUR", False), "average_order_value": ("EUR", False),
    "repeat_purchase_rate": ("share", True), "historic_clv": ("EUR", False), "nps": ("points", False),
    "lead_to_buyer_rate": ("share", True), "sales_lead_conversion_rate": ("share", True),
    "engagement": ("score", False), "cac": ("EUR per new customer", False), "romi": ("ratio", False),
}

# lifecycle stages (marts.lifecycle_transitions), and the ones that count as an active customer
STAGES = ("lead", "first_time_buyer", "repeat_buyer", "loyal", "at_risk", "churned")
ACTIVE = ("first_time_buyer", "repeat_buyer", "loyal")
# RFM segments (marts.customer_segments)
RFM_SEGMENTS = ("champions", "loyal", "potential_loyalists", "new_customers", "promising", "need_attention",
                "about_to_sleep", "at_risk", "cant_lose", "hibernating", "lost")

# rules of channel attribution (marts.channel_attribution)
ATTRIBUTION_RULES = ("first_touch", "last_touch", "linear")
