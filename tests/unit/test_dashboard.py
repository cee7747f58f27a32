"""The business dashboard: rendered by the daily run, opened in headless Chromium (no JavaScript
error, no network request, every chart drawn or saying why not, a screenshot), on the production
world and on a tiny one; plus what it must never do (show personal data, let text run as script,
show a list that fails its check, overwrite today's page with an old day)."""

import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import plotly.graph_objects as go
import pytest

from crm_platform import reports as dashboard
from crm_platform.marts import kpis
from crm_platform.core import settings
from crm_platform.reports.page import (NOT_ENOUGH, Chart, Section, Table, Tile, personal_data, render,
                                       withhold_invalid)
from crm_platform.core.privacy import EMAIL_RE, PHONE_RE
from crm_platform.contracts.schemas import AtRiskCustomers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: the dashboard's browser test needs Debian's chromium "
                             "package (apt-get install chromium; .ci/run installs it)")

# what the page looks like to the browser, once its script has drawn every chart
STATE = """() => ({
  ready: document.body.dataset.ready,
  expected: Number(document.body.dataset.charts),
  charts: Array.from(document.querySelectorAll('.chart')).map(d => {
    const gd = d.querySelector('.js-plotly-plot');
    return {id: d.id, state: d.dataset.state, svgs: d.querySelectorAll('svg.main-svg').length,
            traces: gd && gd._fullData ? gd._fullData.filter(t => t.visible !== false).length : 0,
            marks: d.querySelectorAll('.plot path, .plot rect, .plot image').length,
            text: d.innerText};
  }),
  tiles: Array.from(document.querySelectorAll('.tile')).map(t => ({
    label: t.querySelector('.label').innerText, value: t.querySelector('.value').innerText})),
  tables: Array.from(document.querySelectorAll('.card.table')).map(t => ({id: t.id, state: t.dataset.state,
    rows: Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText))})),
  pwned: window.__pwned === true,
})"""


def open_in_browser(page_file: Path, screenshot: Path) -> dict:
    """Open the file in headless Chromium, refuse every network request (and record it), wait for
    the page's script to finish drawing, take a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    errors, requests = [], []

    def route(r):
        if r.request.url.startswith("file:"):
            return r.continue_()
        requests.append(r.request.url)
        return r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
            page.route("**/*", route)
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready]", state="attached", timeout=90_000)
            state = page.evaluate(STATE)
            page.screenshot(path=str(screenshot), full_page=True)
            # one screenshot per section too, to look at what a marketer sees chart by chart
            sections = {}
            for sid in page.eval_on_selector_all("section[id]", "els => els.map(e => e.id)"):
                sections[sid] = screenshot.with_name(f"{screenshot.stem}_{sid}.png")
                page.locator(f"section#{sid}").screenshot(path=str(sections[sid]))
        finally:
            browser.close()
    return {**state, "errors": errors, "requests": requests, "sections": sections}


def assert_every_chart_drawn_or_explained(state: dict) -> tuple[set, set]:
    assert state["errors"] == [], state["errors"]
    assert state["requests"] == [], f"the page asked the network for {state['requests']}"
    assert state["ready"] == str(state["expected"]), f"the page's script did not finish: {state['ready']}"
    drawn, empty = set(), set()
    for c in state["charts"]:
        if c["state"] == "drawn":
            assert c["svgs"] >= 1 and c["traces"] >= 1 and c["marks"] >= 1, c
            drawn.add(c["id"])
        else:
            assert c["state"] == "empty" and f"{NOT_ENOUGH}:" in c["text"], c
            empty.add(c["id"])
    assert len(drawn) == state["expected"]
    return drawn, empty


def assert_screenshot(path: Path, min_height: int = 2000) -> None:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 1000 and im.height > min_height, (path.name, im.size)
        colours = len(im.convert("RGB").resize((200, 400)).getcolors(maxcolors=80_000) or [])
    assert colours > 50, f"the screenshot {path.name} is nearly blank"


@needs_browser
def test_dashboard_of_the_daily_run_draws_every_chart(production_run, tmp_path):
    home = production_run
    page = home / "reports" / "dashboard.html"
    assert page.exists(), "the daily run did not render reports/dashboard.html"
    shot = tmp_path / "dashboard.png"
    state = open_in_browser(page, shot)
    drawn, empty = assert_every_chart_drawn_or_explained(state)
    assert {"kpi_trends", "lifecycle_funnel", "lifecycle_stages", "lifecycle_flows", "rfm_map", "rfm_grid", "cohort_retention",
            "cluster_sizes", "review_queue", "ingestion", "quarantine_reasons", "checks", "alerts_per_day"} <= drawn, empty
    assert_screenshot(shot)
    assert set(state["sections"]) == {"kpis", "overview", "lifecycle", "churn", "models", "identity", "data_quality",
                                      "alerts"}
    for path in [shot, *state["sections"].values()]:
        if path != state["sections"]["kpis"]:
            assert_screenshot(path, min_height=250)
        shutil.copy(path, home / "reports" / path.name)   # kept beside the page for a look

    # what a marketer reads: a funnel that only narrows, each model's lift on its own scale, the
    # first alert day's backlog named instead of flattening every other day
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        from crm_platform.reports import business, health, sections
        from crm_platform.ml.registry import Registry

        ctx = sections.Context(con, dashboard.as_of_day(con), kpis.load_config(settings.segments_file()),
                               dashboard.champion_cards(Registry(home / "models")))
        funnel = business.lifecycle_funnel(ctx).figure.data[0].x
        assert list(funnel) == sorted(funnel, reverse=True) and funnel[0] > funnel[-1]
        lift = health.lift(ctx)
        if lift.figure is not None:
            assert len([a for a in lift.figure.layout if a.startswith("yaxis")]) == \
                len([c for c in ctx.cards.values() if c.get("deciles")])
        # the production run computes one day an uplift window back, then the last three: the first
        # of those three is computed without the 30 days before it, so its alerts are a backlog
        backlog = health.backlog_alert_days(ctx, 30)
        assert backlog == [ctx.day - timedelta(days=2)] or not con.execute(
            "SELECT count(*) FROM alerts.customer_alerts WHERE alert_date = ?", [ctx.day - timedelta(days=2)]).fetchall()[0][0]
        alerts = health.alerts_per_day(ctx)
        text = alerts.missing or " ".join(a.text for a in alerts.figure.layout.annotations)
        for day in backlog:
            assert f"{day:%d %b %Y}" in text
            assert alerts.figure is None or all(day not in pd.to_datetime(t.x).date for t in alerts.figure.data)
    finally:
        con.close()

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        day = con.execute("SELECT max(kpi_date) FROM marts.kpi_daily").fetchall()[0][0]
        active = con.execute("SELECT value FROM marts.kpi_daily WHERE kpi = 'active_customers' AND kpi_date = ?",
                             [day]).fetchall()[0][0]
        tiles = {t["label"]: t["value"] for t in state["tiles"]}
        assert tiles["Active customers"] == f"{active:,.0f}"
        # the at-risk list: ids of scored customers, each with the probability the model gave
        table = next(t for t in state["tables"] if t["id"] == "top_at_risk")
        if table["state"] == "table":
            for cid, prob, band, *_ in table["rows"]:
                got = con.execute("SELECT churn_probability, risk_band FROM ml.churn_scores WHERE snapshot_date = ? "
                                  "AND customer_id = ?", [day, cid]).fetchall()
                assert got and abs(got[0][0] - float(prob)) < 1e-3 and got[0][1] == band == band.strip()
        emails = {e for (e,) in con.execute("SELECT lower(email) FROM core.customers WHERE email IS NOT NULL").fetchall()}
        names = {n for (n,) in con.execute("SELECT last_name FROM core.customers WHERE length(last_name) > 5").fetchall()}
    finally:
        con.close()
    html = page.read_text(encoding="utf-8")
    assert not emails & {e.lower() for e in re.findall(EMAIL_RE, html)}
    shown = " ".join(c["text"] for c in state["charts"]) + str(state["tables"])
    assert not [n for n in names if re.search(rf"\b{re.escape(n)}\b", shown)]


@needs_browser
def test_dashboard_of_a_tiny_world_says_not_enough_data(tiny_run, tmp_path):
    page = tiny_run / "reports" / "dashboard.html"
    assert page.exists()
    shot = tmp_path / "tiny.png"
    state = open_in_browser(page, shot)
    drawn, empty = assert_every_chart_drawn_or_explained(state)
    assert {"calibration", "lift", "churn_distribution"} <= empty, empty
    assert {"lifecycle_funnel", "cluster_sizes"} <= drawn
    assert_screenshot(shot)


@needs_browser
def test_text_never_runs_as_script(tmp_path):
    evil = "</script><script>window.__pwned = true; alert('x')</script><img src=x onerror=\"window.__pwned=true\">"
    fig = go.Figure(go.Bar(x=[evil, "b"], y=[1, 2], hovertext=[evil, evil]))
    sections = [Section("s", evil, evil, [Chart("c1", evil, evil, fig), Chart("c2", evil, evil, missing=evil),
                                          Table("t", evil, evil, pd.DataFrame({"col": [evil]}))])]
    page = tmp_path / "evil.html"
    page.write_text(render(evil, evil, [Tile(evil, evil, evil, evil)], sections), encoding="utf-8")
    state = open_in_browser(page, tmp_path / "evil.png")
    assert not state["pwned"]
    drawn, empty = assert_every_chart_drawn_or_explained(state)
    assert drawn == {"c1"} and empty == {"c2"}
    assert state["tables"][0]["rows"] == [[evil]]          # shown as text, not markup


def test_personal_data_in_a_chart_is_found():
    fig = go.Figure(go.Bar(x=["C000000001", "anna.schmidt@example.org"], y=[1, 2]))
    found = personal_data([Tile("Active", "12")], [Section("s", "S", "", [Chart("c", "t", "c", fig)])],
                          [EMAIL_RE, PHONE_RE])
    assert found == ["anna.schmidt@example.org"]
    numbers = go.Figure(go.Scatter(x=[1.0123456789, 2.5], y=[0.0176543210, 3]))     # floats are not phones
    assert personal_data([], [Section("s", "S", "", [Chart("c", "t", "c", numbers)])], [EMAIL_RE, PHONE_RE]) == []


def test_an_at_risk_list_that_fails_its_check_is_withheld():
    good = pd.DataFrame({"customer_id": ["C000000002", "C000000001"], "churn_probability": [0.9, 0.5],
                         "risk_band": ["high", "medium"], "predicted_clv_12m": [1000.0, 800.0],
                         "value_at_risk": [900.0, 400.0], "lifecycle_stage": ["at_risk", "loyal"],
                         "rfm_segment": ["cant_lose", None], "next_best_offer": ["shoes", None]})
    bad = good.assign(churn_probability=[1.7, 0.5])
    sections = [Section("s", "S", "", [Table("good", "", "", good, schema=AtRiskCustomers),
                                       Table("bad", "", "", bad, schema=AtRiskCustomers)])]
    failures = withhold_invalid(sections)
    assert failures["good"].empty and len(failures["bad"]) >= 1
    good_t, bad_t = sections[0].items
    assert good_t.missing is None and bad_t.missing.startswith("withheld")
    assert "C000000002" not in render("t", "s", [], sections).split("withheld")[-1]


def test_an_older_day_gets_its_own_file_and_leaves_today_alone(production_run, tmp_path):
    con = duckdb.connect(str(production_run / "warehouse.duckdb"), read_only=True)
    try:
        newest = dashboard.as_of_day(con)
        cfg = kpis.load_config(settings.segments_file())
        today = dashboard.render_day(con, newest, tmp_path, cfg)
        before = today.path.read_bytes()
        old = dashboard.render_day(con, newest - timedelta(days=1), tmp_path, cfg)
    finally:
        con.close()
    assert today.path.name == "dashboard.html" and today.day == newest
    assert old.path.name == f"dashboard_{newest - timedelta(days=1)}.html" and old.path.exists()
    assert today.path.read_bytes() == before
    assert today.personal_data == [] and "checks" in today.not_enough_data   # no run history outside Dagster
    assert isinstance(newest, date)
