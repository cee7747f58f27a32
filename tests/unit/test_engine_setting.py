"""The engine setting and the DuckDB side of the seam (no Spark needed): the setting is checked,
tables kept on Spark are read in DuckDB as views, switching back makes them DuckDB tables again,
and an erasure refuses while person data is kept in Parquet tables it does not search."""

import duckdb
import pytest

from crm_platform.core import engines, settings
from crm_platform.core.engines import attach


def test_the_engine_setting_defaults_to_duckdb_and_names_the_choices(monkeypatch):
    monkeypatch.delenv("CRM_PLATFORM_ENGINE", raising=False)
    assert settings.engine().name == "duckdb"
    monkeypatch.setenv("CRM_PLATFORM_ENGINE", "Spark")
    monkeypatch.setenv("CRM_PLATFORM_SPARK_MASTER", "spark://head:7077")
    cfg = settings.engine()
    assert (cfg.name, cfg.spark_master, cfg.spark_partitions) == ("spark", "spark://head:7077", 8)
    monkeypatch.setenv("CRM_PLATFORM_ENGINE", "snowflake")
    with pytest.raises(ValueError, match="one of duckdb, spark, not 'snowflake'"):
        settings.engine()
    monkeypatch.setenv("CRM_PLATFORM_ENGINE", "spark")
    monkeypatch.setenv("CRM_PLATFORM_SPARK_PARTITIONS", "many")
    with pytest.raises(ValueError, match="PARTITIONS must be a positive whole number"):
        settings.engine()


def _kept_on_spark(tmp_path):
    """A warehouse whose staging.contacts and identity.crosswalk a Spark run keeps as Parquet."""
    db = tmp_path / "warehouse.duckdb"
    folder = engines.folder_of(db)
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA raw; CREATE TABLE raw.shop_customers AS SELECT 'c1' AS customer_id")
    for table, sql in (("staging.contacts", "SELECT 'shop:c1' AS contact_key, 'ann@example.org' AS email_std"),
                       ("identity.crosswalk", "SELECT 'shop:c1' AS contact_key, 'C000001' AS customer_id")):
        schema, name = table.split(".")
        (folder / schema / name).mkdir(parents=True)
        con.execute(f"COPY ({sql}) TO '{(folder / schema / name / 'part-0.parquet').as_posix()}' (FORMAT parquet)")
    (folder / "raw" / "shop_customers").mkdir(parents=True)     # a published copy of an embedded table
    con.execute(f"COPY raw.shop_customers TO '{(folder / 'raw' / 'shop_customers' / 'p.parquet').as_posix()}' "
                "(FORMAT parquet)")
    attach(con, engines.kept_on_spark(folder), folder)
    return db, folder, con


def test_tables_kept_on_spark_are_views_and_switching_back_embeds_them(tmp_path, monkeypatch):
    db, folder, con = _kept_on_spark(tmp_path)
    assert engines.kept_on_spark(folder) == ["identity.crosswalk", "staging.contacts"]    # raw stays DuckDB's
    kinds = dict(con.execute("SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables "
                             "ORDER BY 1").fetchall())
    assert kinds == {"identity.crosswalk": "VIEW", "raw.shop_customers": "BASE TABLE", "staging.contacts": "VIEW"}
    monkeypatch.setenv("CRM_PLATFORM_ENGINE", "duckdb")
    with engines.heavy(con, db) as engine:
        assert engine is con
    kinds = dict(con.execute("SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables "
                             "ORDER BY 1").fetchall())
    assert set(kinds.values()) == {"BASE TABLE"} and len(kinds) == 3
    assert con.execute("SELECT customer_id FROM identity.crosswalk").fetchall() == [("C000001",)]
    assert not folder.exists()                                 # no Parquet copy of person data is left


def test_an_erasure_refuses_while_tables_are_kept_on_spark(tmp_path):
    from crm_platform.governance.erasure import erase

    db, folder, con = _kept_on_spark(tmp_path)
    con.close()
    paths = settings.Paths(tmp_path)
    with pytest.raises(RuntimeError, match="erasure refused: 2 tables of the heavy stages are kept on Spark"):
        erase(lambda: duckdb.connect(str(db)), paths, None, "email", "ann@example.org", request_id="r1", actor="test")
    assert paths.warehouse == db and engines.kept_on_spark(folder)     # nothing was touched


def test_the_executor_setting_picks_dagsters_executor_and_says_what_a_missing_one_needs(monkeypatch):
    import sys

    from resources.executors import run_executor

    monkeypatch.delenv("CRM_PLATFORM_EXECUTOR", raising=False)
    assert settings.executor() == "in_process" and run_executor().name == "in_process"
    monkeypatch.setenv("CRM_PLATFORM_EXECUTOR", "Multiprocess")
    assert run_executor().name == "multiprocess"
    monkeypatch.setenv("CRM_PLATFORM_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="one of in_process, multiprocess, celery, k8s, not 'threads'"):
        settings.executor()
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)        # the k8s extra not installed
    with pytest.raises(RuntimeError, match=r"needs the k8s extra: .*-e '\.\[k8s\]'"):
        run_executor("k8s")
