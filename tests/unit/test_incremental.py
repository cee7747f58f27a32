"""The daily refresh: a delivery of new files is merged into what is built, with the same result
as building everything again."""

import csv
import shutil
from datetime import date
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest

from crm_platform.staging import tables as staging
from crm_platform.customer360 import timeline
from crm_platform.identity import engine, resolve
from crm_platform.golden import survivorship as golden
from crm_platform.demo import GeneratorConfig, deliver, generate
from tests.conftest import generator_spec, ingest_all

pytestmark = pytest.mark.slow  # whole builds per fixture: the full lane, not the fast one

DAY = date(2026, 9, 30)
SPEC = generator_spec()
RULES = golden.load_rules()


def table_digest(con, table: str, leave_out: tuple[str, ...] = ()) -> tuple[int, int]:
    """Rows and an order-independent hash of every row (without the columns left out, and without
    ``_built_at``: when the platform built the row)."""
    cols = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()
            if c not in (*leave_out, "_built_at")]
    return con.execute(f"SELECT count(*), coalesce(sum(hash(({', '.join(cols)}))), 0)::HUGEINT "
                       f"FROM {table}").fetchall()[0]


@pytest.fixture(scope="module")
def delivery_world(tmp_path_factory):
    """1,500 customers, the last 11 days (about 1 % of the rows) held back as a delivery."""
    home = tmp_path_factory.mktemp("delivery")
    generate(GeneratorConfig(customers=1500, seed=11, delivery_days=11), home)
    return home


def correct(path, name: str, key: str, value: str, **changes) -> None:
    """Write ``name`` beside ``path``: its header and its first row whose ``key`` is ``value``, changed."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        row = next(r for r in rows if r[key] == value)
        fields = rows.fieldnames
    with (path.parent / name).open("w", newline="", encoding="utf-8") as fh:
        out = csv.DictWriter(fh, fields, quoting=csv.QUOTE_ALL)
        out.writeheader()
        out.writerow({**row, **changes})


@pytest.fixture(scope="module")
def day(delivery_world, demo_sources, tmp_path_factory):
    """The history built (staging, matching, resolution, golden records); then the delivery (and a
    correction of an old order) landed and built incrementally, and built once more with nothing
    new. Holds the connection, every step's reports (history, day, nothing new), the digest of
    every staging table after the day, and a copy of the warehouse before the day's resolution."""
    home = delivery_world
    here = tmp_path_factory.mktemp("daily")
    con = duckdb.connect(str(here / "w.duckdb"))
    ingest_all(con, demo_sources, home)
    first = {e: staging.build(con, demo_sources, e) for e in staging.STAGING_ENTITIES}
    matched = [resolve.match(con, SPEC, incremental=True)]
    resolved = [resolve.resolve(con, SPEC, incremental=True)]
    built = [golden.build(con, RULES, incremental=True)]
    timelines = [timeline.build(con, incremental=True)]
    deliver(home, DAY)
    # the shop also sends corrections: an old order's status and an old order line's category, and
    # an old account rewritten beyond recognition (it leaves its customer, its orders with it)
    moved = con.execute("""SELECT x.source_record_id, x.customer_id,
               (SELECT list(contact_key) FROM identity.crosswalk m WHERE m.customer_id = x.customer_id) AS members
        FROM identity.crosswalk x
        WHERE x.dataset = 'shop_customers' AND x.cluster_size >= 2
          AND x.contact_key IN (SELECT contact_key FROM staging.orders)
          AND x.customer_id IN (SELECT customer_id FROM core.customer_events GROUP BY 1 HAVING count(DISTINCT contact_key) >= 2)
          AND x.source_record_id NOT IN (SELECT shop_customer_no FROM staging.contacts
                                         WHERE shop_customer_no IS NOT NULL AND source_system <> 'shop')
        ORDER BY 1 LIMIT 1""").fetchall()[0]
    correct(home / "landing/shop/orders.csv", "orders-corrections.csv", "order_no", "O000000001", status="returned")
    correct(home / "landing/shop/order_items.csv", "order_items-corrections.csv", "order_no", "O000000002",
            category="garden")
    correct(home / "landing/shop/customers.csv", "customers-corrections.csv", "customer_no", moved[0],
            first_name="Xaver", last_name="Zyxwortz", email="xz.unique@example.org", phone="", street="",
            zip="", city="", birthday="1901-01-01")
    ingest_all(con, demo_sources, home)
    second = {e: staging.build(con, demo_sources, e) for e in staging.STAGING_ENTITIES}
    digests = {e: table_digest(con, f"staging.{e}", ()) for e in staging.STAGING_ENTITIES}
    matched.append(resolve.match(con, SPEC, incremental=True))
    con.execute("CHECKPOINT")          # the warehouse before the day's resolution, for a full one
    shutil.copy(here / "w.duckdb", here / "before_resolution.duckdb")
    resolved.append(resolve.resolve(con, SPEC, incremental=True))
    built.append(golden.build(con, RULES, incremental=True))
    timelines.append(timeline.build(con, incremental=True))
    matched.append(resolve.match(con, SPEC, incremental=True))
    resolved.append(resolve.resolve(con, SPEC, incremental=True))
    built.append(golden.build(con, RULES, incremental=True))
    timelines.append(timeline.build(con, incremental=True))
    # the same contacts matched from scratch, beside
    matched.append(engine.run(con, SPEC, resolve.SOURCE_SQL, "identity_full"))
    yield SimpleNamespace(con=con, staged=(first, second), digests=digests, matched=matched, resolved=resolved,
                          built=built, timelines=timelines, moved=moved, before_resolution=here / "before_resolution.duckdb")
    con.close()


def test_staging_merges_only_the_delivered_files_and_equals_a_full_build(day, demo_sources):
    con, (first, second), digests = day.con, day.staged, day.digests
    assert {r.mode for r in first.values()} == {"full"}
    for e, rep in second.items():
        assert rep.mode == "incremental", (e, rep.reason)
        assert rep.rows_read <= 0.05 * rep.rows, (e, rep)
    for e in ("contacts", "orders", "order_items", "email_events", "web_events", "support_tickets"):
        assert second[e].files_read >= 1 and second[e].rows_read > 0, e
        assert con.execute(f"SELECT count(*) FROM staging.{e} WHERE _source_file LIKE '%2026-09-30%'").fetchall()[0][0] > 0, e
    # the correction replaced the order it re-delivers
    assert con.execute("SELECT status, count(*) OVER () FROM staging.orders WHERE order_id = 'O000000001'").fetchall() \
        == [("returned", 1)]
    # a full build of the same raw layer gives the same rows, row by row
    con.execute(f"DELETE FROM {staging.STATE}")
    for e in staging.STAGING_ENTITIES:
        assert staging.build(con, demo_sources, e).mode == "full"
        assert table_digest(con, f"staging.{e}", ()) == digests[e], e


def test_staging_without_new_files_reads_nothing_and_a_new_version_rebuilds(day, demo_sources, delivery_world):
    con, second = day.con, day.staged[1]
    again = staging.build(con, demo_sources, "orders")
    assert (again.mode, again.files_read, again.rows_read, again.rows) == ("incremental", 0, 0, second["orders"].rows)
    # a corrected re-export of a delivered file replaces its rows: only a full build can drop the old ones
    path = delivery_world / "landing/shop/orders-2026-09-30.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    ingest_all(con, demo_sources, delivery_world)
    fixed = staging.build(con, demo_sources, "orders")
    assert fixed.mode == "full" and "newer version" in fixed.reason
    assert fixed.rows == second["orders"].rows - 1


def test_build_state_contract_fails_on_a_file_staged_twice(day):
    import pandera.errors

    from crm_platform.contracts.schemas import StagingBuildState

    con = day.con
    state = con.execute(f"SELECT * FROM {staging.STATE}").df()
    assert len(StagingBuildState.validate(state)) == len(state) > 0
    with pytest.raises(pandera.errors.SchemaError):
        StagingBuildState.validate(pd.concat([state, state.head(1)], ignore_index=True))
    with pytest.raises(pandera.errors.SchemaError):
        StagingBuildState.validate(state.assign(query_hash=["0" * 16] + ["f" * 16] * (len(state) - 1)))


def test_identity_matches_only_new_contacts_against_all_and_proposes_the_pairs_a_full_run_would(day):
    con, second, (first, daily, again, full) = day.con, day.staged[1], day.matched
    assert (first.mode, first.reason) == ("full", "no earlier run")
    assert daily.mode == "incremental", daily.reason
    new = second["contacts"].rows_read
    assert daily.records_matched == new > 0 and daily.records == full.records
    assert again.mode == "incremental" and again.records_matched == 0
    # every pair a full run proposes, and no other; the same comparison vector for each
    cols = ", ".join(["left_id", "right_id", "blocking_rule", "rule_mask"])
    assert table_digest(con, f"(SELECT {cols} FROM identity.candidate_pairs)") == \
        table_digest(con, f"(SELECT {cols} FROM identity_full.candidate_pairs)")
    gammas = ", ".join(["left_id", "right_id", *SPEC.gammas, "deterministic_rule", "cannot_link_rule"])
    assert table_digest(con, f"(SELECT {gammas} FROM identity.pair_scores)") == \
        table_digest(con, f"(SELECT {gammas} FROM identity_full.pair_scores)")
    # under the earlier model the decisions may differ a little from freshly trained weights
    agree = con.execute("""SELECT avg((i.decision = f.decision)::INT), count(*) FROM identity.pair_scores i
        JOIN identity_full.pair_scores f USING (left_id, right_id)""").fetchall()[0]
    assert agree[0] > 0.98 and agree[1] == full.candidate_pairs
    # the new contacts' pairs were compared this run: some link to a contact matched before
    linked = con.execute("""SELECT count(*) FROM identity.pair_scores WHERE decision IN ('link', 'deterministic')
        AND (left_id IN (SELECT contact_key FROM staging.contacts WHERE _source_file LIKE '%2026-09-30%')
          OR right_id IN (SELECT contact_key FROM staging.contacts WHERE _source_file LIKE '%2026-09-30%'))""").fetchall()[0][0]
    assert linked > 0


@pytest.fixture(scope="module")
def full_resolution(day):
    """The warehouse as it was before the day's resolution, resolved and built in full."""
    other = duckdb.connect(str(day.before_resolution))
    yield other, resolve.resolve(other, SPEC), golden.build(other, RULES), timeline.build(other)
    other.close()


def test_identity_resolves_only_the_touched_components_into_what_a_full_resolution_gives(day, full_resolution):
    con, (first, daily, again) = day.con, day.resolved
    assert first.mode == "full" and daily.mode == "incremental", daily.reason
    assert 0 < daily.records_resolved < 0.1 * daily.records
    assert again.mode == "incremental" and again.records_resolved == 0
    assert daily.records == con.execute("SELECT count(*) FROM staging.contacts").fetchall()[0][0]
    other, full = full_resolution[:2]
    assert full.mode == "full" and full.records == daily.records and full.customers == daily.customers
    leave_out = {"crosswalk": ("resolved_at",), "links": (), "review_queue": (), "id_changes": ("changed_at",),
                 "id_registry": ("minted_at", "retired_at")}
    for table, cols in leave_out.items():
        assert table_digest(con, f"identity.{table}", cols) == table_digest(other, f"identity.{table}", cols), table


def like_full(reports: list[dict], rebuilt: str, size: str, full: dict, tables: tuple[str, ...], con, other) -> None:
    """A core step built for the history, the day and once more with nothing new: the day rebuilt
    a little, nothing new rebuilt nothing, and its tables equal a full build's of the same input."""
    assert [r["mode"] for r in reports] == ["full", "incremental", "incremental"], reports
    daily, again = reports[1:]
    assert 0 < daily[rebuilt] < 0.1 * daily[size] and again[rebuilt] == 0
    assert full["mode"] == "full" and full[size] == daily[size]
    for table in tables:
        assert table_digest(con, table) == table_digest(other, table), table


def test_golden_records_rebuild_only_the_customers_resolved_that_day(day, full_resolution):
    like_full(day.built, "customers_rebuilt", "customers", full_resolution[2],
              ("core.customers", "core.customer_field_provenance"), day.con, full_resolution[0])


def test_timeline_makes_again_only_the_events_of_new_rows_and_moved_contacts(day, full_resolution):
    like_full(day.timelines, "staged_rows_rebuilt", "events", full_resolution[3],
              ("core.customer_events", "core.unattributed_events"), day.con, full_resolution[0])
    # the delivered events are there; the corrected order line's category is in its order's event;
    # the rewritten account left its customer: the records parted, each taking its events along
    con = day.con
    assert con.execute("SELECT count(*) FROM core.customer_events WHERE event_at >= '2026-09-20'").fetchall()[0][0] > 0
    assert con.execute("SELECT list_contains(categories, 'garden') FROM core.customer_events "
                       "WHERE source_record_id = 'O000000002' AND event_type LIKE 'order%'").fetchall() == [(True,)]
    _, was, members = day.moved
    now = dict(con.execute("SELECT contact_key, customer_id FROM identity.crosswalk WHERE list_contains(?, contact_key)",
                           [members]).fetchall())
    assert len(set(now.values())) >= 2 and was in now.values()
    owners = con.execute("SELECT DISTINCT contact_key, customer_id FROM core.customer_events "
                         "WHERE list_contains(?, contact_key) AND channel <> 'web'", [members]).fetchall()
    assert {c for _, c in owners} == set(now.values()) and all(now[k] == c for k, c in owners)


def test_a_full_rebuild_of_the_staged_contacts_needs_a_full_match(day, demo_sources):
    """A new standardization rebuilds staging.contacts keeping its load times: matching only new
    contacts would miss every changed match form."""
    con = day.con
    resolve.match(con, SPEC, incremental=True)         # (an earlier test rebuilt staging in full)
    assert resolve.match(con, SPEC, incremental=True).mode == "incremental"
    con.execute(f"DELETE FROM {staging.STATE} WHERE entity = 'contacts'")
    assert staging.build(con, demo_sources, "contacts").mode == "full"
    again = resolve.match(con, SPEC, incremental=True)
    assert again.mode == "full" and "rebuilt in full" in again.reason


def test_weights_older_than_a_week_are_trained_afresh(day):
    con = day.con
    resolve.match(con, SPEC, incremental=True)         # (an earlier test may have rebuilt staging in full)
    assert resolve.match(con, SPEC, incremental=True).mode == "incremental"
    con.execute("UPDATE identity.match_weights SET trained_at = trained_at - INTERVAL 8 DAY")
    again = resolve.match(con, SPEC, incremental=True)
    assert again.mode == "full" and "older than 7 days" in again.reason
