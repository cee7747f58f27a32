"""Models on the data a real shop has: a short history, no e-mail, support or NPS data. CLV then
comes from the count models (no label window needed), churn still trains, and the cards say why."""

import shutil
from datetime import date, timedelta

import duckdb
import pandas as pd
import pytest

from crm_platform.features import snapshots as features
from crm_platform.ml import NotEnoughData, churn, clv, labels, load_config
from crm_platform.contracts.schemas import ClvScores

CFG = load_config()
FCFG = features.load_config()


def _variant(timeline_world, tmp_path, sql: str) -> duckdb.DuckDBPyConnection:
    """A copy of the generated world's warehouse with ``sql`` run on its timeline."""
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(timeline_world, db)
    con = duckdb.connect(str(db))
    con.execute(sql)
    return con


def _last_day(con):
    return con.execute("SELECT max(known_at)::DATE FROM core.customer_events").fetchall()[0][0]


@pytest.mark.parametrize("months", [pytest.param(9, marks=pytest.mark.slow), 3])
def test_a_short_history_serves_clv_from_the_count_models_with_a_note(timeline_world, tmp_path, months):
    probe = duckdb.connect(str(timeline_world), read_only=True)
    start = _last_day(probe) - timedelta(days=months * 30)
    probe.close()
    # the shop's export begins `months` months before its last day
    con = _variant(timeline_world, tmp_path, f"DELETE FROM core.customer_events WHERE event_at < DATE '{start}'")
    model, card = clv.train(con, CFG, FCFG)
    assert card["tier"] == "count_models" and card["model"] in ("bg_nbd_gamma_gamma", "pareto_nbd_gamma_gamma")
    assert "no 365-day label window yet" in card["notes"][0] and "too short" in card["notes"][0]
    m = card["metrics"]
    # measured on a time split inside the history, better than repeating the last period
    split = date.fromisoformat(card["test_cutoff"])
    assert split - start > timedelta(days=months * 30 * 0.6) and card["horizon_days"] == months * 30 // 3
    assert m[card["model"]]["mae"] < m["historic"]["mae"] and card["challenger_metric"] > CFG.gate_margin
    assert 0 < m[card["model"]]["normalized_gini"] <= 1 and len(card["value_deciles"]) == 10
    day = _last_day(con)
    frame = clv.scoring_frame(con, FCFG, day, model=model)
    out = clv.score(model, card, frame, CFG)
    assert set(out["customer_id"]) == set(frame.loc[frame["orders_total"] > 0, "customer_id"]) and len(out) > 300
    assert [c for c in out if c.startswith("expected_purchases_")] == [f"expected_purchases_{n}d" for n in CFG.clv_horizons]
    ClvScores.validate(out.assign(snapshot_date=pd.Timestamp(day), model_version="v0001"))
    assert out["expected_next_order_date"].notna().any() and (out["clv_12m_high"] > out["clv_12m_low"]).mean() > 0.5
    con.close()


def test_too_few_repeat_buyers_for_the_count_models_is_not_enough_data(timeline_world, tmp_path):
    # nine months of a shop whose customers each bought once
    con = _variant(timeline_world, tmp_path, """
        DELETE FROM core.customer_events WHERE event_at < (SELECT max(known_at) - INTERVAL 270 DAY FROM core.customer_events);
        DELETE FROM core.customer_events e WHERE event_type = 'order' AND event_at > (
            SELECT min(event_at) FROM core.customer_events f WHERE f.customer_id = e.customer_id AND f.event_type = 'order')""")
    with pytest.raises(NotEnoughData, match="too short for a 365-day label window.*the count models need at least "
                                            "30 purchase histories, 15 of them with a repeat purchase; there are .* and 0"):
        clv.train(con, CFG, FCFG)
    con.close()


@pytest.mark.slow
def test_a_shop_without_email_support_or_nps_data_trains_churn(timeline_world, tmp_path):
    con = _variant(timeline_world, tmp_path, """DELETE FROM core.customer_events
        WHERE event_type LIKE 'email%' OR event_type LIKE 'ticket%' OR event_type LIKE 'nps%'""")
    left = {r[0] for r in con.execute("SELECT DISTINCT event_type FROM core.customer_events").fetchall()}
    assert "order" in left and not any(t.startswith(("email", "ticket", "nps")) for t in left)
    model, card = churn.train(con, CFG, FCFG)
    assert not card["failed_candidates"]
    gone = {"email_open_rate_90d", "email_click_rate_90d", "satisfaction_avg"}
    assert not gone & set(card["features"]) and gone <= set(card["left_out_features"])
    assert any(n.startswith(f"{len(card['left_out_features'])} feature(s) without information left out") for n in card["notes"])
    m = card["metrics"]
    assert m[card["model"]]["roc_auc"] > m["recency_rule"]["roc_auc"] + 0.01
    # the definition follows the purchase cadence, and the card compares with the simple rules
    assert card["definition"]["source"].startswith("purchase cadence") and card["horizon_days"] % 30 == 0
    assert {c["rule"] for c in card["compared"]} <= {"recency_rule", "bg_nbd_alive", "pareto_nbd_alive"}
    frame = churn.scoring_frame(con, FCFG, _last_day(con), model=model)
    out = churn.score(model, card, frame, CFG)
    assert len(out) == (frame["orders_total"] > 0).sum() and out["churn_probability"].between(0, 1).all()
    con.close()


def test_the_churn_horizon_follows_the_purchase_cadence_unless_configured(timeline_world):
    con = duckdb.connect(str(timeline_world), read_only=True)
    first, last = con.execute("SELECT min(event_at)::DATE, max(known_at)::DATE FROM core.customer_events").fetchall()[0]
    q = con.execute("""WITH d AS (SELECT DISTINCT customer_id, event_at::DATE AS day FROM core.customer_events
        WHERE event_type = 'order'), g AS (SELECT date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day),
        day) AS gap FROM d) SELECT quantile_cont(gap, 0.8) FROM g""").fetchall()[0][0]
    auto = labels.churn_horizon(con, None, 90, first, last)
    assert auto.horizon_days - 30 < q <= auto.horizon_days and auto.horizon_days % 30 == 0
    assert labels.churn_horizon(con, 45, 90, first, last).horizon_days == 45
    # a short history shortens it to a third of the history
    short = labels.churn_horizon(con, None, 90, last - timedelta(days=200), last)
    assert short.horizon_days == 60 and "shortened" in short.source
    con.close()
