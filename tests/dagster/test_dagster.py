"""The Dagster graph: materialize everything, re-materialize idempotently, failing checks show."""

import os
import shutil

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from assets import (customer360_assets, customer360_checks, feature_assets, golden_assets, identity_assets,
                    identity_checks, marts_assets, raw_assets, staging_assets, staging_checks)
from crm_platform.core import settings
from resources.identity import IdentityResolution
from resources.warehouse import LandingZone


@pytest.fixture
def platform(world, demo_sources, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(world / "landing", home / "landing")
    shutil.copytree(world / "truth", home / "truth")
    resources = {"warehouse": DuckDBResource(database=str(home / "warehouse.duckdb")),
                 "landing": LandingZone(home=str(home), sources_path=str(demo_sources.path)),
                 "identity": IdentityResolution(home=str(home), match_spec_path="",
                                                survivorship_path=str(settings.DEFAULT_SURVIVORSHIP))}
    defs = [*raw_assets(demo_sources), *staging_assets(demo_sources), *staging_checks(demo_sources),
            *identity_assets(), *golden_assets(), *identity_checks(demo_sources), *customer360_assets(),
            *customer360_checks(demo_sources)]

    def run():
        return dg.materialize(defs, resources=resources, instance=dg.DagsterInstance.ephemeral(),
                              raise_on_error=False)
    run.resources = resources
    run.defs = defs
    return home, run


def _checks(result):
    return {(ev.asset_key.to_user_string(), ev.check_name): ev for ev in result.get_asset_check_evaluations()}


def _raw_counts(home):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM raw.{t}").fetchall()[0][0] for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='raw'").fetchall()}
    finally:
        con.close()


def _table(home, name):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.sql(f"SELECT * EXCLUDE (resolved_at) FROM {name} ORDER BY ALL" if name.endswith("crosswalk")
                       else f"SELECT * FROM {name} ORDER BY ALL").df()
    finally:
        con.close()


def _metadata(result, key):
    return next(e.materialization.metadata for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey(key))


def test_materialize_all_then_again_changes_nothing(platform):
    home, run = platform
    first = run()
    assert first.success
    checks = _checks(first)
    assert len(checks) == 13 * 2 + 9 + 10 + 5 + 2   # raw, staging, identity tables, guards, timeline
    failed = {k: ev.description for k, ev in checks.items() if not ev.passed}
    assert not failed
    raw_meta = _metadata(first, ["raw", "shop_orders"])
    assert raw_meta["files_loaded"].value == 1 and raw_meta["dagster/row_count"].value > 1000
    assert "reason" in raw_meta["files_this_run"].value
    counts = _raw_counts(home)
    quality = _metadata(first, ["identity", "resolution_quality"])
    assert quality["measured_against"].value == "generator truth"
    assert quality["bcubed_f1"].value > 0.95
    crosswalk = _table(home, "identity.crosswalk")

    second = run()
    assert second.success
    again = _metadata(second, ["raw", "shop_orders"])
    assert again["files_loaded"].value == 0 and again["files_skipped_already_loaded"].value == 1
    assert _raw_counts(home) == counts
    assert _table(home, "identity.crosswalk").equals(crosswalk)      # no customer id changed
    assert _table(home, "identity.id_changes").empty
    assert all(ev.passed for ev in _checks(second).values())


def test_a_delivery_is_built_incrementally_and_validated_row_by_row_where_it_changed(platform):
    home, run = platform
    instance = dg.DagsterInstance.ephemeral()           # one run history across both runs

    def materialize():
        return dg.materialize(run.defs, resources=run.resources, instance=instance, raise_on_error=False)

    first = materialize()
    assert first.success
    whole = _checks(first)[("staging/orders", "pandera_Orders")].metadata
    assert whole["rows_checked_row_by_row"].value == whole["rows_validated"].value > 1000
    # the next day's shop export: three new orders
    lines = (home / "landing/shop/orders.csv").read_text().splitlines()
    (home / "landing/shop/orders-2026-10-01.csv").write_text(
        "\n".join([lines[0], *(line.replace('"O', '"N', 1) for line in lines[1:4])]) + "\n")
    second = materialize()
    assert second.success
    checks = _checks(second)
    day = checks[("staging/orders", "pandera_Orders")]
    assert day.passed and "rows loaded after" in day.description
    assert day.metadata["rows_checked_row_by_row"].value == 3
    assert day.metadata["rows_validated"].value == whole["rows_validated"].value + 3
    for table, model in (("staging/contacts", "Contacts"), ("identity/crosswalk", "Crosswalk"),
                         ("identity/pair_scores", "PairScores"), ("core/customers", "Customers")):
        unchanged = checks[(table, f"pandera_{model}")]
        assert unchanged.passed and unchanged.metadata["rows_checked_row_by_row"].value == 0, table
    events = checks[("core/customer_events", "pandera_CustomerEvents")]
    assert events.passed and events.metadata["rows_checked_row_by_row"].value == 3
    assert all(ev.passed for ev in checks.values())
    staged = _metadata(second, ["staging", "orders"])
    assert staged["build_mode"].value == "incremental" and staged["rows_staged_this_run"].value == 3
    assert _metadata(second, ["identity", "crosswalk"])["resolve_mode"].value == "incremental"
    timeline = _metadata(second, ["core", "customer_events"])
    assert timeline["build_mode"].value == "incremental" and timeline["staged_rows_rebuilt_this_run"].value == 3
    # the data team asks for fresh weights from the launchpad
    rematch = dg.materialize(run.defs, resources=run.resources, instance=instance, selection=[
        dg.AssetKey(["identity", t]) for t in ("candidate_pairs", "match_weights", "pair_scores")],
        run_config={"ops": {"match_contacts": {"config": {"full_rematch": True}}}})
    matched = _metadata(rematch, ["identity", "candidate_pairs"])
    assert matched["match_mode"].value == "full" and matched["records_matched_this_run"].value == matched["records"].value


def test_unreadable_file_fails_its_check_while_the_rest_loads(platform):
    home, run = platform
    (home / "landing/shop/orders_extra.csv").write_text("order_no;customer_no;total\nX1;K1;3\n")
    result = run()
    assert result.success
    checks = _checks(result)
    bad = checks[("raw/shop_orders", "files_readable")]
    assert not bad.passed and "orders_extra.csv" in bad.description
    assert "missing required columns" in bad.description
    assert checks[("raw/shop_orders", "rows_reconcile")].passed
    assert checks[("staging/orders", "pandera_Orders")].passed
    assert list((home / "quarantine/shop_orders").glob("*orders_extra.csv.reason.json"))


def test_a_firing_identity_guard_blocks_the_golden_records(platform):
    """A reviewer forces a merge of two records carrying different shop accounts (a declared
    strong identifier): the guard check on the crosswalk fails and core.customers is not rebuilt
    from the bad crosswalk."""
    home, run = platform
    assert run().success
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    a, b = con.execute("""SELECT x.contact_key, y.contact_key FROM identity.crosswalk x
        JOIN staging.contacts cx USING (contact_key), identity.crosswalk y JOIN staging.contacts cy USING (contact_key)
        WHERE x.customer_id < y.customer_id AND cx.shop_customer_no <> cy.shop_customer_no LIMIT 1""").fetchall()[0]
    con.close()
    (home / "review").mkdir(exist_ok=True)
    (home / "review/decisions.csv").write_text(f"left_id,right_id,decision\n{a},{b},match\n")
    result = run()
    checks = _checks(result)
    guard = checks[("identity/crosswalk", "guard_conflicting_ids")]
    assert not guard.passed and guard.metadata["violations"].value >= 1
    assert checks[("identity/crosswalk", "guard_max_cluster_size")].passed
    built = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "identity/crosswalk" in built and "core/customers" not in built


def test_daily_partition_materializes_and_checks(platform):
    home, run = platform
    assert run().success
    daily = [dg.AssetKey(["features", "customer_features"]), dg.AssetKey(["marts", "lifecycle_transitions"]),
             dg.AssetKey(["marts", "customer_segments"]), dg.AssetKey(["marts", "kpi_daily"]),
             dg.AssetKey(["marts", "cohort_retention"]), dg.AssetKey(["marts", "behaviour_clusters"]),
             dg.AssetKey(["marts", "behaviour_cluster_profiles"]), dg.AssetKey(["marts", "lookalikes"]),
             dg.AssetKey(["marts", "channel_attribution"])]
    result = dg.materialize([*run.defs, *feature_assets(), *marts_assets()], selection=daily,
                            partition_key="2026-06-30", resources=run.resources,
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success
    checks = _checks(result)
    assert len(checks) == 9 and all(ev.passed for ev in checks.values())
    assert checks[("features/customer_features", "pandera_CustomerFeatures")].metadata["rows_validated"].value > 500
    assert "recency_days" in _metadata(result, ["features", "customer_features"])["feature_summary"].value
    seg = _metadata(result, ["marts", "customer_segments"])
    assert seg["rfm_computed"].value and sum(seg["lifecycle_stages"].value.values()) > 500
    kpi = _metadata(result, ["marts", "kpi_daily"])
    assert kpi["kpi/active_customers"].value > 100 and 0 < kpi["kpi/churn_rate"].value < 1
    assert 3 <= _metadata(result, ["marts", "behaviour_clusters"])["k"].value <= 8
    assert _metadata(result, ["marts", "lookalikes"])["scored"].value > 500
    assert _metadata(result, ["marts", "channel_attribution"])["orders"].value > 0
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    days = con.execute("SELECT DISTINCT snapshot_date::VARCHAR FROM features.customer_features").fetchall()
    stages = con.execute("SELECT count(*), count(DISTINCT customer_id) FROM marts.customer_segments").fetchall()[0]
    con.close()
    assert days == [("2026-06-30",)] and stages[0] == stages[1]


def test_every_warehouse_connection_holds_to_the_configured_memory_limit(tmp_path, monkeypatch):
    from resources.warehouse import read_only, warehouse_resource

    def limits():
        resource = warehouse_resource()
        with resource.get_connection() as con:
            con.execute("CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS x")
            written = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        with read_only(resource) as con:
            read = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        return written, read

    monkeypatch.setenv("CRM_PLATFORM_HOME", str(tmp_path))
    monkeypatch.setenv("CRM_PLATFORM_DUCKDB_MEMORY", "1GB")
    assert limits() == ("953.6 MiB", "953.6 MiB")
    # unset: 6 GiB, or 80 % of the machine's memory if that is less (DuckDB alone would take 80 %)
    monkeypatch.delenv("CRM_PLATFORM_DUCKDB_MEMORY")
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    expected = min(6 * 1024**3, int(physical * 0.8)) // 1024**2
    written, read = limits()
    assert written == read
    value, unit = written.split()
    assert abs(float(value) * {"GiB": 1024, "MiB": 1}[unit] - expected) < 1
    monkeypatch.setenv("CRM_PLATFORM_DUCKDB_MEMORY", "lots")
    with pytest.raises(duckdb.Error, match="Memory must have a number"):
        limits()
