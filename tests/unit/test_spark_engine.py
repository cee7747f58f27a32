"""The heavy stages on Spark (local mode, two cores) and on DuckDB give the same tables: the raw
tables of a generated world handed to Spark's Parquet warehouse, then staging, identity
resolution, the timeline and a point-in-time feature snapshot on both engines, and the golden
records built in DuckDB from each engine's identity tables."""

import shutil

import duckdb
import pytest

from crm_platform.customer360 import timeline
from crm_platform.features import snapshots
from crm_platform.golden import survivorship as golden
from crm_platform.identity import resolve
from crm_platform.ingest.sources import load_sources
from crm_platform.core.settings import DEFAULT_SOURCES
from crm_platform.staging import tables as staging
from tests.conftest import generator_spec
from tests.engines import differences

pytestmark = [pytest.mark.slow, pytest.mark.spark]

STAGING = "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_schema = 'staging'"
RAW = STAGING.replace("'staging'", "'raw'")
IDENTITY = ("records", "candidate_pairs", "patterns", "match_weights", "pair_scores", "links", "crosswalk",
            "review_queue", "id_registry", "id_changes")
# when a row was written (source_generation: when staging was built): the engines ran at other instants
TIMES = ("_built_at", "trained_at", "resolved_at", "minted_at", "changed_at", "retired_at", "source_generation")


@pytest.fixture(scope="module")
def both(loaded_world, spark, tmp_path_factory):
    from crm_platform.core.spark import SparkWarehouse, publish

    root = tmp_path_factory.mktemp("engines")
    shutil.copy(loaded_world, root / "warehouse.duckdb")
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    publish(con, [t for (t,) in con.execute(RAW).fetchall()], root / "spark")
    on_spark = SparkWarehouse(spark, root / "spark")
    cfg, spec, features = load_sources(DEFAULT_SOURCES), generator_spec(), snapshots.load_config()
    reports = {}
    for e in staging.STAGING_ENTITIES:           # DuckDB's warehouse holds them staged already
        staging.build(on_spark, cfg, e)
    for name, engine in (("duckdb", con), ("spark", on_spark)):
        reports[name] = resolve.match(engine, spec), resolve.resolve(engine, spec)
        timeline.build(engine)
        cutoff = con.execute("SELECT max(event_at)::DATE - 30 FROM core.customer_events").fetchall()[0][0]
        reports[name] += (snapshots.build_snapshot(engine, features, cutoff), timeline.summary(engine))
    yield con, on_spark, reports, root
    on_spark.close()
    con.close()


@pytest.mark.parametrize("table", [f"staging.{e}" for e in staging.STAGING_ENTITIES] +
                         [f"identity.{t}" for t in IDENTITY] + ["core.customer_events", "features.customer_features"])
def test_tables_are_equal_on_both_engines(both, table):
    con, on_spark, _, _ = both
    a = con.execute(f"SELECT * FROM {table}").df()
    b = on_spark.execute(f"SELECT * FROM {table}").df()
    assert len(a) == len(b)
    assert differences(a, b, TIMES) == ""


def test_both_engines_report_the_same_resolution(both):
    _, _, reports, _ = both
    (dm, dr, dn, dt), (sm, sr, sn, st) = reports["duckdb"], reports["spark"]
    assert dn == sn > 0 and dt["events_per_customer"] == pytest.approx(st["events_per_customer"])
    assert dt["customers_with_events"] == st["customers_with_events"]
    assert dm.decisions == sm.decisions and dm.candidate_pairs == sm.candidate_pairs > 0
    assert dm.prior_match_probability == pytest.approx(sm.prior_match_probability, rel=1e-9)
    assert (dr.records, dr.customers, dr.links_accepted, dr.refused) == (sr.records, sr.customers, sr.links_accepted, sr.refused)
    assert dr.customers < dr.records                         # duplicates were merged, on both


def test_golden_records_built_in_duckdb_from_the_spark_tables_are_the_same(both):
    from crm_platform.core.engines import attach

    con, _, _, root = both
    golden.build(con, golden.load_rules())
    expected = con.execute("SELECT * FROM core.customers").df()
    other = duckdb.connect(str(root / "from_spark.duckdb"))
    attach(other, [f"identity.{t}" for t in ("records", "crosswalk")], root / "spark")
    attach(other, [t for (t,) in con.execute(STAGING).fetchall()], root / "spark")
    golden.build(other, golden.load_rules())
    assert differences(expected, other.execute("SELECT * FROM core.customers").df(), TIMES) == ""
    other.close()
