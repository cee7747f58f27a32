"""The canonical CRM data model: the entities every source system maps into.

Each entity lists its canonical columns with a type and the row-level rules that ingestion enforces
(required, non-negative, not in the future, a range or a set of allowed values). A source declaration
(``sources.yaml``) maps a system's own column names onto these. ``docs/data-model.md`` describes the
same model for people; the Pandera models in ``crm_platform.contracts.schemas`` hold the staging contracts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Types a canonical column can have; ingestion knows how to parse each from text.
TYPES = {"str", "email", "timestamp", "date", "int", "decimal", "bool"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "str"
    required: bool = False
    non_negative: bool = False
    not_future: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    pii: bool = False
    doc: str = ""
    # a rule of the record's country, checked at load: "phone", "postcode" or "country"
    country_rule: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}")


@dataclass(frozen=True)
class Entity:
    name: str
    doc: str
    columns: tuple[Column, ...]
    # Natural key within one source system: duplicates of it inside one file are quarantined.
    key: tuple[str, ...]
    # Column holding the record id of the person in a contact dataset (the event's owner).
    contact_ref: str | None = None
    extra: dict = field(default_factory=dict)
    leaves_out: str = ""     # what a company without this entity does not get

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"entity {self.name} has no column {name!r}")


C = Column

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in [
        Entity(
            "contacts",
            "Every person record from every system: shop customer, newsletter subscriber, support "
            "requester, sales lead contact, survey respondent.",
            (
                C("source_record_id", required=True, doc="the record's id in its system"),
                C("record_kind", allowed=("customer", "subscriber", "requester", "lead_contact", "respondent",
                                          "contact")),
                C("salutation", pii=True),
                C("first_name", pii=True),
                C("last_name", pii=True),
                C("full_name", pii=True, doc="used when a system keeps one name field"),
                C("email", "email", pii=True),
                C("phone", pii=True, country_rule="phone"),
                C("company", doc="employer for B2B contacts"),
                C("street", pii=True, doc="street and house number"),
                C("postcode", pii=True, country_rule="postcode"),
                C("city", pii=True),
                C("country", country_rule="country", doc="ISO code or name; the dataset's `country` when empty"),
                C("birth_date", "date", pii=True, not_future=True),
                C("shop_customer_no", doc="shop customer number carried by another system"),
                C("national_id", pii=True, doc="a national identification number (social security, tax id): "
                  "one person's, so two different ones never join"),
                C("created_at", "timestamp", not_future=True),
                C("updated_at", "timestamp", not_future=True),
                C("consent_email", "bool"),
                C("consent_phone", "bool"),
            ),
            # the system's own id identifies a record: one without e-mail, phone or name is a customer
            # all the same (a shop's customer number), who matches nobody else
            key=("source_record_id",),
            contact_ref="source_record_id",
            leaves_out="customers (without contact records or events that carry their ids there is nobody to resolve)",
        ),
        Entity(
            "orders",
            "Shop orders, one row per order.",
            (
                C("order_id", required=True),
                C("customer_ref", required=True, doc="record id of the buyer in the contact system"),
                C("ordered_at", "timestamp", required=True, not_future=True),
                C("status", allowed=("completed", "cancelled", "returned", "partially_returned")),
                C("sales_channel", doc="web, app, store"),
                C("currency"),
                C("total_amount", "decimal", required=True, non_negative=True),
                C("discount_amount", "decimal", non_negative=True),
                C("shipping_amount", "decimal", non_negative=True),
                C("coupon_code"),
            ),
            key=("order_id",),
            contact_ref="customer_ref",
            leaves_out="purchases: RFM, revenue and order KPIs, cohorts, attribution, the churn and CLV models",
        ),
        Entity(
            "order_items",
            "Order lines: product, category, quantity, price and whether it was returned.",
            (
                C("order_id", required=True),
                C("line_number", "int", required=True, min=1),
                C("sku", required=True),
                C("product_name"),
                C("category"),
                C("quantity", "int", required=True, min=1),
                C("unit_price", "decimal", required=True, non_negative=True),
                C("returned", "bool"),
                C("returned_at", "timestamp", not_future=True),
            ),
            key=("order_id", "line_number"),
            leaves_out="categories and returns of order lines: next-best-offer, category breadth, return rates",
        ),
        Entity(
            "email_events",
            "Newsletter events: send, open, click, unsubscribe, bounce.",
            (
                C("event_id", required=True),
                C("subscriber_ref", required=True),
                C("campaign_id"),
                C("event_type", required=True,
                  allowed=("send", "open", "click", "unsubscribe", "bounce")),
                C("occurred_at", "timestamp", required=True, not_future=True),
                C("url"),
            ),
            key=("event_id",),
            contact_ref="subscriber_ref",
            leaves_out="e-mail engagement: open and click rates, e-mail touches in attribution",
        ),
        Entity(
            "support_tickets",
            "Support desk tickets with priority, category and satisfaction.",
            (
                C("ticket_id", required=True),
                C("requester_ref", required=True),
                C("shop_customer_no"),
                C("opened_at", "timestamp", required=True, not_future=True),
                C("closed_at", "timestamp", not_future=True),
                C("status", allowed=("open", "pending", "solved", "closed")),
                C("priority", allowed=("low", "normal", "high", "urgent")),
                C("category"),
                C("escalated", "bool"),
                C("satisfaction_score", "int", min=1, max=5, doc="1 (bad) to 5 (great)"),
            ),
            key=("ticket_id",),
            contact_ref="requester_ref",
            leaves_out="support history: ticket and satisfaction features, support cost in historic CLV",
        ),
        Entity(
            "web_events",
            "Web analytics events; anonymous visitors and, after login, the shop customer id.",
            (
                C("event_id", required=True),
                C("visitor_id", required=True, doc="anonymous cookie id"),
                C("customer_ref", doc="shop customer number once the visitor logged in"),
                C("session_id"),
                C("occurred_at", "timestamp", required=True, not_future=True),
                C("event_type", required=True,
                  allowed=("page_view", "product_view", "add_to_cart", "checkout", "login")),
                C("page_url"),
                C("sku"),
                C("category"),
                C("utm_source"),
                C("utm_campaign"),
            ),
            key=("event_id",),
            contact_ref="customer_ref",
            leaves_out="web behaviour: sessions, cart abandonment, campaign touches in attribution",
        ),
        Entity(
            "nps_responses",
            "Net Promoter Score survey answers (0-10) with comment.",
            (
                C("response_id", required=True),
                C("respondent_ref", required=True),
                C("shop_customer_no"),
                C("submitted_at", "timestamp", required=True, not_future=True),
                C("score", "int", required=True, min=0, max=10),
                C("comment"),
            ),
            key=("response_id",),
            contact_ref="respondent_ref",
            leaves_out="the Net Promoter Score and NPS features",
        ),
        Entity(
            "leads",
            "Sales pipeline: leads and opportunities with stage, value and conversion.",
            (
                C("lead_id", required=True),
                C("contact_ref", required=True),
                C("company"),
                C("stage", required=True,
                  allowed=("new", "contacted", "qualified", "proposal", "won", "lost")),
                C("expected_value", "decimal", non_negative=True),
                C("lead_channel"),
                C("created_at", "timestamp", required=True, not_future=True),
                C("converted_at", "timestamp", not_future=True),
                C("shop_customer_no"),
            ),
            key=("lead_id",),
            contact_ref="contact_ref",
            leaves_out="the sales pipeline: lead scoring, lead-to-buyer conversion",
        ),
        Entity(
            "marketing_spend",
            "Marketing spend per channel and day.",
            (
                C("spend_date", "date", required=True, not_future=True),
                C("channel", required=True),
                C("campaign"),
                C("amount", "decimal", required=True, non_negative=True),
                C("currency"),
            ),
            key=("spend_date", "channel", "campaign"),
            leaves_out="spend per channel: CAC and ROMI",
        ),
    ]
}


def entity(name: str) -> Entity:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(ENTITIES)}") from None


# Lineage columns every raw and staging row carries.
LINEAGE_COLUMNS = ("_source_system", "_dataset", "_source_file", "_file_version", "_source_line",
                   "_loaded_at")


def markdown() -> str:
    """The entity tables of docs/data-model.md, rendered from this module (a test keeps them equal)."""
    out = []
    for e in ENTITIES.values():
        out += [f"### `staging.{e.name}`", "", e.doc + (f" Without it: {e.leaves_out}." if e.leaves_out else ""), "",
                f"Natural key per system: `{', '.join(e.key)}`."
                + (f" Owner: `{e.contact_ref}` → `contact_key`." if e.contact_ref and e.name != "contacts" else ""),
                "", "| column | type | rules | PII | notes |", "|---|---|---|---|---|"]
        for c in e.columns:
            rules = [r for r, on in (("required", c.required), ("≥ 0", c.non_negative),
                                     ("not in the future", c.not_future)) if on]
            if c.min is not None:
                rules.append(f"≥ {c.min:g}")
            if c.max is not None:
                rules.append(f"≤ {c.max:g}")
            if c.allowed:
                rules.append("one of " + "/".join(c.allowed))
            if c.country_rule:
                rules.append({"phone": "a phone number of the record's country",
                              "postcode": "a postcode of the record's country",
                              "country": "a country"}[c.country_rule])
            out.append(f"| `{c.name}` | {c.type} | {', '.join(rules)} | {'yes' if c.pii else ''} | {c.doc} |")
        out.append("")
    return "\n".join(out)
