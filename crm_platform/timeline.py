"""The 360° timeline: every interaction from every silo on one line per golden customer.

``core.customer_events`` holds one row per interaction (order, returned order line, e-mail event,
ticket opened / closed, identified web event, NPS answer, lead created / converted), keyed on the
golden ``customer_id`` through ``identity.crosswalk``, with type, channel, value and source lineage.

Two times per event: ``event_at`` (when it happened) and ``known_at`` (when the platform could
know it belonged to this customer). They differ for web events of a visitor's anonymous sessions:
those join the customer's timeline once the visitor logs in, so they are known from that login
on. Point-in-time features read ``known_at <= cutoff``, which keeps a snapshot free of hindsight.

Web attribution: a session with a login belongs to the customer who logged in; an anonymous
session belongs to the one customer its visitor (cookie) ever logged in as. A visitor seen as
several customers (a shared computer) has its anonymous sessions left unattributed.

Activity rows that name a contact the crosswalk does not know (a data error upstream) do not
vanish: they go to ``core.unattributed_events`` with the reason.
"""

from __future__ import annotations

# One SELECT per source; each yields the event columns plus ``contact_key`` (the staged contact
# the row names) and ``source_record_id``. Values: orders their total, returns the returned
# line's amount, NPS answers the score, ticket closings the satisfaction score, leads their
# expected value. ``detail``: an order's coupon code, a ticket's priority, a lead's current stage
# (the sales export carries the current stage only, so creation and conversion are the dated
# stage changes).
EVENT_COLUMNS = ("event_at", "known_at", "event_type", "channel", "value", "discount", "categories",
                 "category", "campaign", "detail", "session_id", "source_system", "dataset", "source_record_id")

EVENT_TYPES = ("order", "order_cancelled", "return", "email_send", "email_open", "email_click",
               "email_unsubscribe", "email_bounce", "ticket_opened", "ticket_closed", "ticket_closed_escalated",
               "nps_answer", "lead_created", "lead_converted", "web_page_view", "web_product_view",
               "web_add_to_cart", "web_checkout", "web_login")

SOURCES = {
    "orders": """
        SELECT o.contact_key, o.ordered_at AS event_at, o.ordered_at AS known_at,
               CASE WHEN o.status = 'cancelled' THEN 'order_cancelled' ELSE 'order' END AS event_type,
               o.sales_channel AS channel, o.total_amount AS value, o.discount_amount AS discount,
               i.categories, NULL AS category, NULL AS campaign, o.coupon_code AS detail,
               o.source_system, o.dataset, o.order_id AS source_record_id
        FROM staging.orders o
        LEFT JOIN (SELECT order_id, list_sort(list_distinct(list(category))) AS categories
                   FROM staging.order_items GROUP BY 1) i USING (order_id)""",
    "returns": """
        SELECT o.contact_key, i.returned_at AS event_at, i.returned_at AS known_at, 'return' AS event_type,
               o.sales_channel AS channel, i.quantity * i.unit_price AS value, NULL AS discount,
               NULL AS categories, i.category, NULL AS campaign, NULL AS detail, i.source_system, i.dataset,
               i.order_id || '/' || i.line_number AS source_record_id,
               CASE WHEN o.order_id IS NULL THEN 'its order is not in staging.orders (quarantined)'
                    WHEN i.returned_at IS NULL THEN 'returned without a return date' END AS orphan_reason
        FROM staging.order_items i LEFT JOIN staging.orders o USING (order_id)
        WHERE i.returned""",
    "email_events": """
        SELECT contact_key, occurred_at AS event_at, occurred_at AS known_at, 'email_' || event_type AS event_type,
               'email' AS channel, NULL AS value, NULL AS discount, NULL AS categories, NULL AS category,
               campaign_id AS campaign, NULL AS detail, source_system, dataset, event_id AS source_record_id
        FROM staging.email_events""",
    "tickets_opened": """
        SELECT contact_key, opened_at AS event_at, opened_at AS known_at, 'ticket_opened' AS event_type,
               'support' AS channel, NULL AS value, NULL AS discount, NULL AS categories, category,
               NULL AS campaign, priority AS detail, source_system, dataset, ticket_id AS source_record_id
        FROM staging.support_tickets""",
    "tickets_closed": """
        SELECT contact_key, closed_at AS event_at, closed_at AS known_at,
               CASE WHEN escalated THEN 'ticket_closed_escalated' ELSE 'ticket_closed' END AS event_type,
               'support' AS channel, satisfaction_score AS value, NULL AS discount, NULL AS categories,
               category, NULL AS campaign, priority AS detail, source_system, dataset, ticket_id AS source_record_id
        FROM staging.support_tickets WHERE closed_at IS NOT NULL""",
    "nps": """
        SELECT contact_key, submitted_at AS event_at, submitted_at AS known_at, 'nps_answer' AS event_type,
               'survey' AS channel, score AS value, NULL AS discount, NULL AS categories, NULL AS category,
               NULL AS campaign, NULL AS detail, source_system, dataset, response_id AS source_record_id
        FROM staging.nps_responses""",
    "leads_created": """
        SELECT contact_key, created_at AS event_at, created_at AS known_at, 'lead_created' AS event_type,
               lead_channel AS channel, expected_value AS value, NULL AS discount, NULL AS categories,
               NULL AS category, NULL AS campaign, stage AS detail, source_system, dataset, lead_id AS source_record_id
        FROM staging.leads""",
    "leads_converted": """
        SELECT contact_key, converted_at AS event_at, converted_at AS known_at, 'lead_converted' AS event_type,
               lead_channel AS channel, expected_value AS value, NULL AS discount, NULL AS categories,
               NULL AS category, NULL AS campaign, stage AS detail, source_system, dataset, lead_id AS source_record_id
        FROM staging.leads WHERE converted_at IS NOT NULL""",
}

# web events: the customer a session or visitor is identified as, and from when
WEB = """
WITH logins AS (
    SELECT w.visitor_id, w.session_id, x.customer_id, w.occurred_at
    FROM staging.web_events w JOIN {crosswalk} x USING (contact_key)),
session_owner AS (
    SELECT session_id, arg_min(customer_id, occurred_at) AS customer_id, min(occurred_at) AS identified_at
    FROM logins GROUP BY 1),
visitor_owner AS (
    SELECT visitor_id, any_value(customer_id) AS customer_id, min(occurred_at) AS identified_at,
           count(DISTINCT customer_id) AS customers
    FROM logins GROUP BY 1)
SELECT coalesce(s.customer_id, CASE WHEN v.customers = 1 THEN v.customer_id END) AS customer_id,
       w.contact_key, w.occurred_at AS event_at,
       greatest(w.occurred_at, coalesce(s.identified_at, v.identified_at)) AS known_at,
       'web_' || w.event_type AS event_type, 'web' AS channel, NULL AS value, NULL AS discount,
       NULL AS categories, w.category, coalesce(w.utm_campaign, w.utm_source) AS campaign, NULL AS detail,
       w.session_id,
       w.source_system, w.dataset, w.event_id AS source_record_id,
       CASE WHEN s.customer_id IS NOT NULL OR v.customers = 1 THEN NULL
            WHEN v.customers > 1 THEN 'visitor logged in as several customers'
            ELSE 'visitor never logged in' END AS unattributed_reason
FROM staging.web_events w
LEFT JOIN session_owner s USING (session_id)
LEFT JOIN visitor_owner v USING (visitor_id)"""


def build(con, crosswalk: str = "identity.crosswalk") -> dict:
    """Write core.customer_events and core.unattributed_events; return counts for metadata."""
    con.execute("CREATE SCHEMA IF NOT EXISTS core")
    cols = ", ".join(EVENT_COLUMNS)
    typed = ("CAST(value AS DOUBLE) AS value, CAST(discount AS DOUBLE) AS discount, "
             "CAST(categories AS VARCHAR[]) AS categories")
    parts = []
    for sql in SOURCES.values():
        # a source may say itself why a row has no customer (``orphan_reason``)
        own = "orphan_reason" in sql
        parts.append(
            f"SELECT CASE WHEN {'s.orphan_reason IS NULL' if own else 'true'} THEN x.customer_id END AS customer_id, "
            f"s.contact_key, s.* EXCLUDE (contact_key, value, discount, categories{', orphan_reason' if own else ''}), "
            f"{typed}, {'coalesce(s.orphan_reason, ' if own else '('}CASE WHEN s.contact_key IS NULL THEN "
            f"'names no contact' WHEN x.customer_id IS NULL THEN 'its contact is not in staging.contacts "
            f"(quarantined or never exported)' END) AS unattributed_reason "
            f"FROM ({sql}) s LEFT JOIN {crosswalk} x USING (contact_key)")
    web = (f"SELECT customer_id, contact_key, * EXCLUDE (customer_id, contact_key, value, discount, "
           f"categories, unattributed_reason), {typed}, unattributed_reason FROM ({WEB.format(crosswalk=crosswalk)})")
    # the union is read twice rather than held in memory: once for the timeline, once for the
    # (few) rows without a customer
    union = " UNION ALL BY NAME ".join(parts + [web])
    con.execute(f"""CREATE OR REPLACE TABLE core.customer_events AS
        SELECT md5(source_system || '|' || event_type || '|' || source_record_id) AS event_id,
               customer_id, {cols}, contact_key
        FROM ({union}) WHERE customer_id IS NOT NULL""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _lost AS
        SELECT source_system, dataset, source_record_id, event_type, channel, event_at, contact_key,
               unattributed_reason AS reason FROM ({union}) WHERE customer_id IS NULL""")
    # anonymous web traffic is not an error: counted, not copied row by row
    con.execute("""CREATE OR REPLACE TABLE core.unattributed_events AS
        SELECT * FROM _lost WHERE reason <> 'visitor never logged in'
        ORDER BY source_system, dataset, source_record_id""")
    counts = {
        "events": con.execute("SELECT count(*) FROM core.customer_events").fetchall()[0][0],
        "customers_with_events": con.execute(
            "SELECT count(DISTINCT customer_id) FROM core.customer_events").fetchall()[0][0],
        "by_type": dict(con.execute("SELECT event_type, count(*) FROM core.customer_events "
                                    "GROUP BY 1 ORDER BY 2 DESC").fetchall()),
        "web_events_attributed_after_login": con.execute(
            "SELECT count(*) FROM core.customer_events WHERE channel = 'web' AND known_at > event_at").fetchall()[0][0],
        "unattributed": dict(con.execute("SELECT reason, count(*) FROM _lost GROUP BY 1 ORDER BY 2 DESC").fetchall()),
    }
    con.execute("DROP TABLE _lost")
    return counts
