"""The chain on the companies the generator can pretend to be: any one system alone, a plain order
log, a person list, no e-mail or phone, US and British formats, three months of history. Each is
run as a user would run it - the variant's sources mapping and ``crm-platform materialize`` - and
must exit 0 with the outputs its data supports."""

import duckdb
import pytest

from crm_platform.demo.variants import Variant, make
from tests.conftest import cli

# a year of history is enough for every daily output; the three-month and order-log worlds say
# their own length
CUSTOMERS, SEED, MONTHS = 300, 5, 12


def _count(con, sql: str) -> int:
    return con.execute(sql).fetchall()[0][0]


def _yields(con) -> dict:
    """What the run produced, table by table (0 where a table was never made)."""
    def n(table, where="true"):
        schema, name = table.split(".")
        if not _count(con, f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' "
                           f"AND table_name = '{name}'"):
            return 0
        return _count(con, f"SELECT count(*) FROM {table} WHERE {where}")
    return {"contacts": n("staging.contacts"), "customers": n("core.customers"), "events": n("core.customer_events"),
            "orders": n("core.customer_events", "event_type = 'order'"),
            "features": n("features.customer_features"), "segments": n("marts.customer_segments"),
            "kpis": n("marts.kpi_daily"), "cohorts": n("marts.cohort_retention"),
            "attribution": n("marts.channel_attribution"), "spend": n("staging.marketing_spend"),
            "event_types": {t for (t,) in con.execute("SELECT DISTINCT event_type FROM core.customer_events").fetchall()}
            if n("core.customer_events") else set()}


def _activity(*types):
    return lambda y: y["customers"] > 0 and y["event_types"] and y["event_types"] <= set(types) \
        and y["features"] > 0 and y["segments"] > 0 and y["kpis"] > 0


def _full_chain(y) -> bool:
    return y["customers"] > 0 and y["orders"] > 0 and y["features"] > 0 and y["segments"] > 0 \
        and y["kpis"] > 0 and y["cohorts"] > 0 and y["attribution"] > 0


COMBINATIONS = {
    # each system alone: its own customers (from its contacts, or the ids its events carry) and its events
    "shop_alone": (Variant("shop_alone", systems=("shop",), months=MONTHS), lambda y: _full_chain(y) and y["event_types"] <= {
        "order", "order_cancelled", "return"}),
    "newsletter_alone": (Variant("newsletter_alone", systems=("newsletter",), months=MONTHS),
                         lambda y: _activity("email_send", "email_open", "email_click", "email_unsubscribe",
                                             "email_bounce")(y) and y["cohorts"] == 0),
    "support_alone": (Variant("support_alone", systems=("support",), months=MONTHS),
                      _activity("ticket_opened", "ticket_closed", "ticket_closed_escalated")),
    "sales_alone": (Variant("sales_alone", systems=("sales",), months=MONTHS), _activity("lead_created", "lead_converted")),
    "web_alone": (Variant("web_alone", systems=("web",), months=MONTHS),
                  _activity("web_page_view", "web_product_view", "web_add_to_cart", "web_checkout", "web_login")),
    "nps_alone": (Variant("nps_alone", systems=("nps",), months=MONTHS), _activity("nps_answer")),
    # spend without a single customer: nothing to resolve, no timeline, and no failure
    "marketing_alone": (Variant("marketing_alone", systems=("marketing",), months=MONTHS),
                        lambda y: y["spend"] > 0 and y["contacts"] == 0 and y["events"] == 0),
    "order_log_alone": (Variant("order_log_alone", systems=("shop",), order_log=True, months=18),
                        lambda y: _full_chain(y) and y["event_types"] == {"order"}),
    # names, birth dates and addresses only: customers, and nothing to compute day by day
    "person_list_alone": (Variant("person_list_alone", systems=("shop",), datasets=("shop_customers",),
                                  drop=("email", "phone")), lambda y: y["customers"] > 0 and y["events"] == 0),
    "no_email_no_phone": (Variant("no_email_no_phone", drop=("email", "phone"), months=MONTHS), _full_chain),
    "us_formats": (Variant("us_formats", country="US", months=MONTHS), _full_chain),
    "gb_formats": (Variant("gb_formats", country="GB", months=MONTHS), _full_chain),
    "three_months": (Variant("three_months", months=3), _full_chain),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_the_chain_runs_on_a_company_of_this_shape(name, tmp_path):
    variant, supported = COMBINATIONS[name]
    home = tmp_path / "home"
    sources = make(variant, home, CUSTOMERS, SEED)
    out = cli(home, "materialize", "--days", "1", sources=sources)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    assert "FAILED" not in out.stdout and " failed: " not in out.stdout, out.stdout
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        yields = _yields(con)
        assert supported(yields), yields
        if variant.country != "DE":
            # every phone and postcode standardized in the country's own form
            phones, foreign, postcodes = con.execute(
                "SELECT count(phone_e164), count(*) FILTER (WHERE phone_e164 LIKE ?), count(postcode) "
                "FROM staging.contacts", ["+1%" if variant.country == "US" else "+44%"]).fetchall()[0]
            assert phones > 100 and foreign == phones and postcodes > 100
            assert not _count(con, "SELECT count(*) FROM raw.quarantine_rows WHERE field IN ('phone', 'postcode')")
    finally:
        con.close()
