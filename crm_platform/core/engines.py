"""The engine seam: where the heavy stages run, chosen by one setting (``CRM_PLATFORM_ENGINE``).

The heavy stages - staging, identity resolution, the timeline, the point-in-time features - write
their SQL once; ``heavy`` hands them the connection they run on:

* ``duckdb`` (the default): the DuckDB warehouse connection itself, nothing else happens.
* ``spark``: a ``SparkWarehouse`` (crm_platform.core.spark) over the Parquet tables of the Spark
  warehouse folder (``<home>/spark-warehouse``). Before the stage, the DuckDB tables it reads that
  stay embedded (ingestion's raw layer) are published there as Parquet; after it, every table the
  heavy stages keep there is attached to DuckDB as a view of the same name, so the stages after
  them (golden records, marts, models, alerts), the checks and the asset metadata read them as
  they read DuckDB's own tables.

Switching back to ``duckdb`` turns those views into DuckDB tables again before a stage writes
and removes the Parquet copies. An erasure refuses while tables are kept on Spark
(crm_platform.governance.erasure): it searches and verifies DuckDB and the files under the home.
One Spark session serves every stage of a process (a run with the in-process executor starts one
JVM; the multiprocess executor one per step).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from crm_platform.core import settings
from crm_platform.core.warehouse import table_exists

# the schemas of the tables the stages that stay embedded write and the heavy stages only read
EMBEDDED_INPUTS = ("raw",)

_SESSION = {}


def spark_session(cfg: settings.EngineSettings):
    """The process's Spark session for ``cfg`` (started on first use)."""
    from crm_platform.core import spark

    key = (cfg.spark_master, cfg.spark_memory, cfg.spark_partitions)
    if key not in _SESSION:
        _SESSION.clear()
        _SESSION[key] = spark.session(cfg.spark_master, memory=cfg.spark_memory, partitions=cfg.spark_partitions)
    return _SESSION[key]


def folder_of(database: str | Path) -> Path:
    """The Spark warehouse folder that belongs to a DuckDB warehouse file: beside it."""
    return Path(database).resolve().parent / settings.SPARK_WAREHOUSE


def kept_on_spark(folder: Path) -> list[str]:
    """``schema.table`` of every table the heavy stages keep in the Spark warehouse ``folder``."""
    if not folder.exists():
        return []
    return sorted(f"{s.name}.{t.name}" for s in folder.iterdir() if s.is_dir() and s.name not in EMBEDDED_INPUTS
                  for t in s.iterdir() if t.is_dir() and not t.name.startswith("."))


def _base_tables(con, tables: Sequence[str]) -> list[str]:
    out = []
    for t in tables:
        schema, name = t.split(".")
        if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                       "table_name = ? AND table_type = 'BASE TABLE'", [schema, name]).fetchall()[0][0]:
            out.append(t)
    return out


def embed(con, folder: Path) -> list[str]:
    """The views over the Spark warehouse ``folder`` as DuckDB tables again (the engine switched
    back to DuckDB): each copied from its Parquet files and put in the view's place."""
    views = con.execute("SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    done = []
    for schema, table, sql in views:
        if f"/{settings.SPARK_WAREHOUSE}/{schema}/{table}/*.parquet')" in sql:
            # read from this home's folder: a home copied or moved elsewhere keeps views over the old path
            here = folder / schema / table
            source = f"read_parquet('{here.resolve().as_posix()}/*.parquet')" if here.exists() else f"{schema}.{table}"
            name = f"{schema}.{table}"
            con.execute(f"CREATE OR REPLACE TABLE {schema}._embed_{table} AS SELECT * FROM {source}")
            con.execute(f"DROP VIEW {name}")
            con.execute(f"ALTER TABLE {schema}._embed_{table} RENAME TO {table}")
            done.append(name)
    # the embedded tables' Parquet copies and the published raw tables go: the person data they
    # hold is in DuckDB now (or came from it), and an erasure covers DuckDB
    for name in done:
        schema, table = name.split(".")
        shutil.rmtree(folder / schema / table, ignore_errors=True)
    for schema in EMBEDDED_INPUTS:
        shutil.rmtree(folder / schema, ignore_errors=True)
    if folder.exists() and not any(folder.rglob("*.parquet")):
        shutil.rmtree(folder, ignore_errors=True)
    return done


def attach(con, tables: Sequence[str], folder: Path | str) -> None:
    """Tables of the Spark warehouse ``folder`` as DuckDB views of the same names (DuckDB reads
    the Parquet files in place): the stages after the heavy ones read them as they read their
    own tables."""
    folder = Path(folder).resolve()
    for table in tables:
        schema, name = table.split(".")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ? "
                       "AND table_type = 'BASE TABLE'", [schema, name]).fetchall()[0][0]:
            con.execute(f"DROP TABLE {table}")
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM "
                    f"read_parquet('{(folder / schema / name).as_posix()}/*.parquet')")


@contextmanager
def heavy(con, database: str | Path, reads: Sequence[str] = (),
          cfg: settings.EngineSettings | None = None) -> Iterator:
    """The connection a heavy stage runs on (module doc); ``con`` is the DuckDB warehouse's own,
    ``database`` its file, ``reads`` the embedded tables (``raw.*``) the stage reads."""
    cfg = cfg or settings.engine()
    folder = folder_of(database)
    if cfg.name == "duckdb":
        embed(con, folder)
        yield con
        return
    try:
        from crm_platform.core import spark
    except ImportError as e:
        raise RuntimeError("CRM_PLATFORM_ENGINE=spark needs the spark extra and a Java 17 runtime: "
                           ".venv/bin/pip install -c requirements.lock -e '.[spark]'") from e
    inputs = _base_tables(con, [t for t in reads if table_exists(con, t)])
    if inputs:
        spark.publish(con, inputs, folder)
    warehouse = spark.SparkWarehouse(spark_session(cfg), folder)
    try:
        yield warehouse
    finally:
        warehouse.close()
    attach(con, kept_on_spark(folder), folder)
