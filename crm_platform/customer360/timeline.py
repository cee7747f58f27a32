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

Incremental when asked (the daily run): ``core.build_state`` holds the newest staged load and
resolution the timeline has taken in. The events of staged rows loaded since, of rows naming a
contact resolved since (it may belong to another customer now), of orders whose lines changed, of
new web events, and of every session or visitor whose logins changed who it belongs to are deleted
and made again. The rows are those of a full build (a test holds them equal). A changed
query, a staging table rebuilt in full since, or more than MAX_INCREMENTAL_SHARE of the events
affected build everything.
"""

from __future__ import annotations

from crm_platform.contracts import buildstate
from crm_platform.core.warehouse import table_exists, transaction
from crm_platform.contracts.vocabularies import EVENT_TYPES

# One SELECT per source; each yields the event columns plus ``contact_key`` (the staged contact
# the row names) and ``source_record_id``. Values: orders their total, returns the returned
# line's amount, NPS answers the score, ticket closings the satisfaction score, leads their
# expected value. ``detail``: an order's coupon code, a ticket's priority, a lead's current stage
# (the sales export carries the current stage only, so creation and conversion are the dated
# stage changes).
EVENT_COLUMNS = ("event_at", "known_at", "event_type", "channel", "value", "discount", "categories",
                 "category", "campaign", "detail", "session_id", "source_system", "dataset", "source_record_id")


SOURCES = {
    "orders": """
        SELECT o.contact_key, o.ordered_at AS event_at, o.ordered_at AS known_at,
               CASE WHEN o.status = 'cancelled' THEN 'order_cancelled' ELSE 'order' END AS event_type,
               o.sales_channel AS channel, o.total_amount AS value, o.discount_amount AS discount,
               i.categories, NULL AS category, NULL AS campaign, o.coupon_code AS detail,
               o.source_system, o.dataset, o.order_id AS source_record_id
        FROM staging.orders o
        LEFT JOIN (SELECT order_id, list_sort(list_distinct(list(category))) AS categories
                   FROM {order_items} GROUP BY 1) i USING (order_id)""",
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
    FROM {web_events} w JOIN {crosswalk} x USING (contact_key)),
session_owner AS (
    SELECT session_id, arg_min(customer_id, occurred_at) AS customer_id, min(occurred_at) AS identified_at
    FROM logins GROUP BY 1),
visitor_owner AS (
    -- one customer or several: min against max, not a distinct count (a set per visitor)
    SELECT visitor_id, min(customer_id) AS customer_id, min(occurred_at) AS identified_at,
           min(customer_id) = max(customer_id) AS one_customer
    FROM logins GROUP BY 1)
SELECT coalesce(s.customer_id, CASE WHEN v.one_customer THEN v.customer_id END) AS customer_id,
       w.contact_key, w.occurred_at AS event_at,
       greatest(w.occurred_at, coalesce(s.identified_at, v.identified_at)) AS known_at,
       'web_' || w.event_type AS event_type, 'web' AS channel, NULL AS value, NULL AS discount,
       NULL AS categories, w.category, coalesce(w.utm_campaign, w.utm_source) AS campaign, NULL AS detail,
       w.session_id,
       w.source_system, w.dataset, w.event_id AS source_record_id,
       CASE WHEN s.customer_id IS NOT NULL OR v.one_customer THEN NULL
            WHEN NOT v.one_customer THEN 'visitor logged in as several customers'
            ELSE 'visitor never logged in' END AS unattributed_reason
FROM {web_events} w
LEFT JOIN session_owner s USING (session_id)
LEFT JOIN visitor_owner v USING (visitor_id)"""


# The staged rows behind the events, by family: the table, the row's key as the events'
# source_record_id, the event types it makes, the sources of SOURCES (or "web") it feeds, and when
# the row changes (besides naming a re-resolved contact). ``{L}`` is the load time held.
FAMILIES = {
    "orders": ("staging.orders r", "r.order_id", ("order", "order_cancelled"), ("orders",),
               "r._loaded_at > {L} OR r.order_id IN (SELECT order_id FROM staging.order_items WHERE _loaded_at > {L})"),
    "returns": ("staging.order_items r LEFT JOIN staging.orders o USING (order_id)",
                "r.order_id || '/' || r.line_number", ("return",), ("returns",),
                "r._loaded_at > {L} OR o._loaded_at > {L} OR o.contact_key IN (SELECT contact_key FROM _moved)"),
    "email_events": ("staging.email_events r", "r.event_id", tuple(t for t in EVENT_TYPES if t.startswith("email_")),
                     ("email_events",), "r._loaded_at > {L}"),
    "tickets": ("staging.support_tickets r", "r.ticket_id", ("ticket_opened", "ticket_closed", "ticket_closed_escalated"),
                ("tickets_opened", "tickets_closed"), "r._loaded_at > {L}"),
    "nps": ("staging.nps_responses r", "r.response_id", ("nps_answer",), ("nps",), "r._loaded_at > {L}"),
    "leads": ("staging.leads r", "r.lead_id", ("lead_created", "lead_converted"), ("leads_created", "leads_converted"),
              "r._loaded_at > {L}"),
    # a new web event is made; so is every event of a session with a new or re-resolved login, and
    # of a visitor whose logins now name another customer or start earlier (_web_visitors)
    "web": ("staging.web_events r", "r.event_id", tuple(t for t in EVENT_TYPES if t.startswith("web_")), ("web",),
            "r._loaded_at > {L} OR r.visitor_id IN (SELECT visitor_id FROM _web_visitors) "
            "OR r.session_id IN (SELECT session_id FROM _web_sessions)"),
}
ACTIVITY_ENTITIES = ("orders", "order_items", "email_events", "support_tickets", "web_events", "nps_responses", "leads")
# Above this share of the events affected, a full build costs little more.
MAX_INCREMENTAL_SHARE = 0.2
STEP = "customer_timeline"
TYPED = ("CAST(value AS DOUBLE) AS value, CAST(discount AS DOUBLE) AS discount, "
         "CAST(categories AS VARCHAR[]) AS categories")


def _union(crosswalk: str, only_affected: bool) -> str:
    """Every source's events with the customer they belong to (or why none); ``only_affected``:
    only of the rows keyed in ``_affected``, reading only the order lines of affected orders and
    the web events of the sessions and visitors of affected web events (``_web_in_scope``: who a
    session or visitor belongs to needs all of its logins, and only those)."""
    family = {src: f for f, spec in FAMILIES.items() for src in spec[3]}
    items = ("(SELECT * FROM staging.order_items WHERE order_id IN "
             "(SELECT source_record_id FROM _affected WHERE family = 'orders'))") if only_affected else "staging.order_items"
    web_events = "_web_in_scope" if only_affected else "staging.web_events"

    def affected(name: str, sql: str) -> str:
        if not only_affected:
            return sql
        return (f"SELECT * FROM ({sql}) a SEMI JOIN _affected f ON f.family = '{family[name]}' "
                "AND f.source_system = a.source_system AND f.source_record_id = a.source_record_id")

    parts = []
    for name, sql in SOURCES.items():
        sql = sql.replace("{order_items}", items)
        # a source may say itself why a row has no customer (``orphan_reason``)
        own = "orphan_reason" in sql
        parts.append(
            f"SELECT CASE WHEN {'s.orphan_reason IS NULL' if own else 'true'} THEN x.customer_id END AS customer_id, "
            f"s.contact_key, s.* EXCLUDE (contact_key, value, discount, categories{', orphan_reason' if own else ''}), "
            f"{TYPED}, {'coalesce(s.orphan_reason, ' if own else '('}CASE WHEN s.contact_key IS NULL THEN "
            f"'names no contact' WHEN x.customer_id IS NULL THEN 'its contact is not in staging.contacts "
            f"(quarantined or never exported)' END) AS unattributed_reason "
            f"FROM ({affected(name, sql)}) s LEFT JOIN {crosswalk} x USING (contact_key)")
    web = (f"SELECT customer_id, contact_key, * EXCLUDE (customer_id, contact_key, value, discount, "
           f"categories, unattributed_reason), {TYPED}, unattributed_reason "
           f"FROM ({affected('web', WEB.format(crosswalk=crosswalk, web_events=web_events))})")
    return " UNION ALL BY NAME ".join(parts + [web])


def _why_full(con, crosswalk: str, query: str) -> str | None:
    state = buildstate.held(con, STEP)
    if state is None or not all(table_exists(con, t) for t in ("core.customer_events", "core.unattributed_events")):
        return "no earlier build"
    if state["fingerprint"] != query:
        return "the timeline query changed"
    if state["loaded_through"] is None or state["resolved_through"] is None:
        return "the earlier build took in no data"
    if not table_exists(con, "staging.build_state"):
        return "staging keeps no build state"
    rebuilt = con.execute("SELECT list(entity ORDER BY entity) FROM (SELECT entity, min(built_at) AS first "
                          "FROM staging.build_state WHERE list_contains(?, entity) GROUP BY 1) WHERE first > ?",
                          [list(ACTIVITY_ENTITIES), state["built_at"]]).fetchall()[0][0]
    if rebuilt:
        return f"staging rebuilt {', '.join(rebuilt)} in full since"
    return None


def _affected(con, crosswalk: str) -> int:
    """The temporary ``_affected`` (family, source_system, source_record_id) of every staged row
    whose events are to be made again; returns its size."""
    state = buildstate.held(con, STEP)
    L, R = (f"TIMESTAMP '{state[k]}'" for k in ("loaded_through", "resolved_through"))
    # contacts resolved since (their customer may have changed) or gone from the crosswalk
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _moved AS
        SELECT contact_key FROM {crosswalk} WHERE resolved_at > {R}
        UNION SELECT DISTINCT contact_key FROM core.customer_events ANTI JOIN {crosswalk} USING (contact_key)""")
    # who a session or visitor belongs to comes from its logins (WEB): a session with a new login or
    # a login of a re-resolved contact, and a visitor whose logins now name a customer more or start
    # earlier (or name a re-resolved contact), may belong to someone else now. Only the logins of
    # visitors with a new or re-resolved login can change either: the other visitors' logins
    # (13.5M of the 20M web events at 1M customers) are not looked at
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _logins AS
        WITH touched AS (SELECT DISTINCT visitor_id FROM staging.web_events
                         WHERE contact_key IS NOT NULL
                           AND (_loaded_at > {L} OR contact_key IN (SELECT contact_key FROM _moved)))
        SELECT w.visitor_id, w.session_id, x.customer_id, w.occurred_at, w._loaded_at > {L} AS new,
               w.contact_key IN (SELECT contact_key FROM _moved) AS moved
        FROM staging.web_events w JOIN {crosswalk} x USING (contact_key)
        WHERE w.visitor_id IN (SELECT visitor_id FROM touched) OR w._loaded_at > {L}
           OR w.contact_key IN (SELECT contact_key FROM _moved)""")
    con.execute("CREATE OR REPLACE TEMP TABLE _web_sessions AS SELECT DISTINCT session_id FROM _logins WHERE new OR moved")
    con.execute("""CREATE OR REPLACE TEMP TABLE _web_visitors AS SELECT visitor_id FROM _logins GROUP BY 1
        HAVING bool_or(moved) OR (bool_or(new) AND (
            count(DISTINCT customer_id) > count(DISTINCT customer_id) FILTER (WHERE NOT new)
            OR min(occurred_at) < coalesce(min(occurred_at) FILTER (WHERE NOT new), 'infinity'::TIMESTAMP)))""")
    parts = []
    for f, (table, key, _, _, changed) in FAMILIES.items():
        moved = "" if f in ("returns", "web") else " OR r.contact_key IN (SELECT contact_key FROM _moved)"
        parts.append(f"SELECT '{f}' AS family, r.source_system, {key} AS source_record_id FROM {table} "
                     f"WHERE {changed.format(L=L)}{moved}")
    con.execute("CREATE OR REPLACE TEMP TABLE _affected AS " + " UNION ALL ".join(parts))
    return con.execute("SELECT count(*) FROM _affected").fetchall()[0][0]


def build(con, crosswalk: str = "identity.crosswalk", incremental: bool = False) -> dict:
    """Write core.customer_events and core.unattributed_events; return counts for metadata, the
    mode and the staged rows whose events were made this run."""
    con.execute("CREATE SCHEMA IF NOT EXISTS core")
    cols = ", ".join(EVENT_COLUMNS)
    query = buildstate.fingerprint((SOURCES, WEB, EVENT_COLUMNS, FAMILIES, crosswalk, "_built_at"))
    reason = _why_full(con, crosswalk, query) if incremental else "full build asked for"
    if reason is None:
        n = _affected(con, crosswalk)
        total = con.execute("SELECT count(*) FROM core.customer_events").fetchall()[0][0]
        if n > MAX_INCREMENTAL_SHARE * max(total, 1):
            reason = f"{n:,} staged rows affected (more than {MAX_INCREMENTAL_SHARE:.0%} of {total:,} events)"
    mode = "incremental" if reason is None else "full"
    loaded = con.execute("SELECT max(t) FROM (" + " UNION ALL ".join(
        f"SELECT max(_loaded_at) AS t FROM staging.{e}" for e in ACTIVITY_ENTITIES) + ")").fetchall()[0][0]
    resolved = con.execute(f"SELECT max(resolved_at) FROM {crosswalk}").fetchall()[0][0]
    if mode == "incremental":
        con.execute("""CREATE OR REPLACE TEMP TABLE _web_in_scope AS
            WITH hit AS MATERIALIZED (SELECT w.visitor_id, w.session_id FROM staging.web_events w SEMI JOIN _affected a
                                      ON a.family = 'web' AND a.source_system = w.source_system
                                     AND a.source_record_id = w.event_id)
            SELECT * FROM staging.web_events
            WHERE visitor_id IN (SELECT visitor_id FROM hit) OR session_id IN (SELECT session_id FROM hit)""")
    # the union is read twice rather than held in memory: once for the timeline, once for the
    # (few) rows without a customer
    union = _union(crosswalk, mode == "incremental")
    events = f"""SELECT md5(source_system || '|' || event_type || '|' || source_record_id) AS event_id,
               customer_id, {cols}, contact_key, now()::TIMESTAMP AS _built_at
        FROM ({union}) WHERE customer_id IS NOT NULL"""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _lost AS
        SELECT source_system, dataset, source_record_id, event_type, channel, event_at, contact_key,
               unattributed_reason AS reason FROM ({union}) WHERE customer_id IS NULL""")
    # anonymous web traffic is not an error: counted, not copied row by row
    lost = """SELECT * FROM _lost WHERE reason <> 'visitor never logged in'
        ORDER BY source_system, dataset, source_record_id"""
    with transaction(con):
        if mode == "incremental":
            # the events the affected rows made, by the event types of their family: one pass per table
            kinds = " UNION ALL ".join(f"SELECT '{f}' AS family, unnest({list(types)!r}) AS event_type"
                                       for f, (_, _, types, _, _) in FAMILIES.items())
            con.execute(f"""CREATE OR REPLACE TEMP TABLE _stale AS SELECT a.source_system, a.source_record_id, k.event_type
                FROM _affected a JOIN ({kinds}) k USING (family)""")
            for table in ("customer_events", "unattributed_events"):
                con.execute(f"""DELETE FROM core.{table} e USING _stale s WHERE e.source_system = s.source_system
                    AND e.source_record_id = s.source_record_id AND e.event_type = s.event_type""")
            con.execute(f"INSERT INTO core.customer_events BY NAME {events}")
            con.execute(f"INSERT INTO core.unattributed_events BY NAME {lost}")
        else:
            con.execute(f"CREATE OR REPLACE TABLE core.customer_events AS {events}")
            con.execute(f"CREATE OR REPLACE TABLE core.unattributed_events AS {lost}")
        buildstate.record(con, STEP, query, resolved, loaded)
    rows = con.execute("SELECT count(*) FROM _affected").fetchall()[0][0] if mode == "incremental" else None
    for t in ("_affected", "_moved", "_logins", "_web_sessions", "_web_visitors", "_stale", "_web_in_scope"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    by_type = con.execute("SELECT event_type, count(*), count(*) FILTER (WHERE channel = 'web' AND known_at > "
                          "event_at) FROM core.customer_events GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    counts = {
        "mode": mode, "reason": reason or "staged rows loaded or contacts resolved since the last build",
        "staged_rows_rebuilt": rows,
        "events": sum(n for _, n, _ in by_type),
        "by_type": {t: n for t, n, _ in by_type},
        "web_events_attributed_after_login": sum(w for _, _, w in by_type),
        # of the rows made this run (all of them in a full build)
        "unattributed": dict(con.execute("SELECT reason, count(*) FROM _lost GROUP BY 1 ORDER BY 2 DESC").fetchall()),
        **summary(con),
    }
    con.execute("DROP TABLE _lost")
    return counts


def summary(con) -> dict:
    """Figures of the timeline for people to look at: customers with events, events per customer
    (10th, 50th, 90th percentile and most), per channel (events, customers, value) and the
    customer seen on the most channels (the example timeline). From one pass grouping the events by
    customer and channel: read once per figure, the 35M events of a million customers took 5 s."""
    con.execute("""CREATE OR REPLACE TEMP TABLE _per AS SELECT customer_id, channel, count(*) AS n,
        sum(value) AS value FROM core.customer_events GROUP BY ALL""")
    con.execute("CREATE OR REPLACE TEMP TABLE _per_customer AS SELECT customer_id, sum(n) AS n, count(*) AS channels "
                "FROM _per GROUP BY 1")
    try:
        customers, q, most = con.execute("SELECT count(*), quantile_cont(n, [0.1, 0.5, 0.9]), max(n) "
                                         "FROM _per_customer").fetchall()[0]
        example = con.execute("SELECT customer_id FROM _per_customer ORDER BY channels DESC, n DESC, customer_id "
                              "LIMIT 1").fetchall()
        by_channel = con.sql("""SELECT channel, sum(n)::BIGINT AS events, count(*) AS customers,
            round(sum(value), 2)::DOUBLE AS value FROM _per GROUP BY 1 ORDER BY 2 DESC, 1""").df()
    finally:
        con.execute("DROP TABLE _per; DROP TABLE _per_customer")
    return {"customers_with_events": customers, "events_per_customer": [float(x) for x in q or []],
            "events_per_customer_max": most, "most_channels_customer": example[0][0] if example else None,
            "by_channel": by_channel}
