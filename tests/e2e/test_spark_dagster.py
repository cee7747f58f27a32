"""The Dagster assets with ``CRM_PLATFORM_ENGINE=spark``: the same selection as a user runs it,
through the CLI's materialize, on a small generated world; staging and identity resolution on Spark
(local mode, two cores) give the contacts, pair scores, crosswalk and id registry the DuckDB engine gives, DuckDB
reads Spark's Parquet tables as views, an erasure refuses while they are kept there, and switching
back to DuckDB makes them DuckDB tables again."""

import shutil

import duckdb
import pytest

from crm_platform.demo import GeneratorConfig, generate
from tests.conftest import run_python
from tests.engines import differences

pytestmark = [pytest.mark.slow, pytest.mark.spark]

SELECT = "*identity/crosswalk"    # staging and identity: the other heavy stages take the same seam
RUN = f"""
    from crm_platform.cli.runs import materialize_selection
    results = materialize_selection({SELECT!r})
    assert results and all(r.success for r in results), [r.success for r in results]
    from crm_platform.definitions import defs
    spec = defs.resolve_asset_graph().get(__import__("dagster").AssetKey(["identity", "crosswalk"]))
    print("kinds:", sorted(spec.kinds))
    """
TIMES = ("_loaded_at", "_built_at", "trained_at", "resolved_at", "minted_at", "source_generation")   # when each home ran


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    from tests.servers import spark_missing

    if spark_missing():
        pytest.skip(spark_missing())
    root = tmp_path_factory.mktemp("spark_dagster")
    generate(GeneratorConfig(customers=150, seed=3, months=6), root / "duckdb")
    shutil.copytree(root / "duckdb", root / "spark")
    out = {}
    for engine in ("duckdb", "spark"):
        out[engine] = run_python(root / engine, RUN, env={"CRM_PLATFORM_ENGINE": engine})
    return root, out


def _rows(home, sql):
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.mark.parametrize("table", ["staging.contacts", "identity.pair_scores", "identity.crosswalk", "identity.id_registry"])
def test_the_spark_engine_gives_the_duckdb_engines_tables(homes, table):
    root, _ = homes
    a, b = (_rows(root / e, f"SELECT * FROM {table}") for e in ("duckdb", "spark"))
    assert len(a) == len(b) > 0
    assert differences(a, b, TIMES) == ""


def test_the_heavy_stages_are_parquet_read_as_views_and_say_spark(homes):
    root, out = homes
    assert "kinds: ['spark', 'sql']" in out["spark"] and "kinds: ['duckdb', 'sql']" in out["duckdb"]
    kinds = dict(_rows(root / "spark", "SELECT table_schema || '.' || table_name AS t, table_type "
                                       "FROM information_schema.tables").itertuples(index=False))
    assert kinds["staging.contacts"] == kinds["identity.crosswalk"] == kinds["identity.id_registry"] == "VIEW"
    assert kinds["raw.shop_customers"] == "BASE TABLE"
    assert list((root / "spark" / "spark-warehouse" / "identity" / "crosswalk").glob("*.parquet"))


def test_an_erasure_refuses_on_spark_and_works_once_switched_back(homes, tmp_path):
    root, _ = homes
    home = tmp_path / "home"
    shutil.copytree(root / "spark", home)
    email = _rows(home, "SELECT email_std FROM staging.contacts WHERE email_std IS NOT NULL LIMIT 1").iloc[0, 0]
    erase = f"""
        import sys
        from crm_platform.cli import main
        sys.exit(main(["erase", "--email", {email!r}]))
        """
    with pytest.raises(AssertionError, match="erasure refused: .* kept on Spark"):
        run_python(home, erase)
    before = _rows(home, "SELECT contact_key, customer_id FROM identity.crosswalk ORDER BY 1")
    switch_back = RUN.replace(repr(SELECT), repr("staging/contacts"))    # one heavy step takes them all back
    run_python(home, switch_back, env={"CRM_PLATFORM_ENGINE": "duckdb"})
    kinds = set(_rows(home, "SELECT table_type FROM information_schema.tables").table_type)
    assert kinds == {"BASE TABLE"} and not (home / "spark-warehouse").exists()
    assert before.equals(_rows(home, "SELECT contact_key, customer_id FROM identity.crosswalk ORDER BY 1"))
    run_python(home, erase)
    assert not len(_rows(home, f"SELECT * FROM staging.contacts WHERE email_std = '{email}'"))
