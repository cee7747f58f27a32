"""The DuckDB warehouse: one schema per layer, connections that wait for the writer, and the few
SQL helpers every stage shares (a transaction, a temporary table, replace a partition, sample by
hash, read a frame)."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
import pyarrow as pa

from crm_platform.core import dialect, settings

LAYERS = ("raw", "staging", "identity", "core", "features", "ml", "marts", "alerts", "governance")


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse file for longer than the lock wait."""


def connect(path: Path | str, read_only: bool = False, config: dict | None = None, wait: float | None = None,
            on_wait=None) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse file with the platform's DuckDB settings (its memory limit).

    DuckDB allows one writing process (or several reading ones) per file. A file held by another
    process is tried again, with growing pauses, for up to ``wait`` seconds (default: the lock wait
    of crm_platform.core.settings, ``CRM_PLATFORM_LOCK_WAIT``); ``on_wait(message)`` is told once when
    waiting starts. Then :class:`WarehouseBusy`. Every connection of the platform is opened here."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (settings.lock_wait_seconds() if wait is None else wait)
    pause, told = 0.05, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config or settings.duckdb_config())
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise WarehouseBusy(f"the warehouse {path.name} is held by another process "
                                    f"({str(e).splitlines()[0][:160]}); waited "
                                    f"{settings.lock_wait_seconds() if wait is None else wait:g} s") from e
            if on_wait is not None and not told:
                on_wait(str(e).splitlines()[0][:160])
                told = True
            time.sleep(min(left, pause * random.uniform(0.5, 1.0)))
            pause = min(pause * 1.6, 1.0)


def reader(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A connection for reading. Read-only, unless this process still holds the warehouse open for
    writing - a failed step's error keeps its connection alive - when DuckDB refuses a read-only
    one: then the garbage of that error is collected, and failing that, the open database is shared."""
    import gc

    for attempt in range(2):
        try:
            return connect(path, read_only=True)
        except duckdb.ConnectionException:
            gc.collect()
    return connect(path)


def ensure_layers(con: duckdb.DuckDBPyConnection) -> None:
    for layer in LAYERS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")


def columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """The column names of ``relation``: a table, a view or a table function such as
    ``read_parquet('...')``, in their order."""
    return list(column_types(con, relation))


def on_spark(con) -> bool:
    """Whether ``con`` is the warehouse on Spark (crm_platform.core.spark) rather than DuckDB."""
    return getattr(con, "engine", "duckdb") == "spark"


def column_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """The columns of ``relation`` (as ``columns``) with their DuckDB types, in their order."""
    if on_spark(con):
        return con.column_types(relation)
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    if on_spark(con):
        return con.table_exists(qualified)
    schema, name = qualified.split(".")
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema=? AND table_name=?",
        [schema, name]).fetchall()[0][0])


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """The statements of the block as one transaction: all of them, or none when the block raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def temp_table(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> int:
    """``sql`` as the temporary table ``name`` (replacing it); its row count."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
    return con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]


def replace_partition(con: duckdb.DuckDBPyConnection, table: str, src: str, day_expr: str, day) -> None:
    """Replace the rows of one day (``day_expr = day``) in ``table`` with the rows of ``src``, in
    one transaction; the table is created from ``src`` the first time, and gains the columns
    ``src`` brings that it lacks (earlier days hold null there)."""
    schema = table.split(".")[0]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    with transaction(con):
        if table_exists(con, table):
            # a column the table does not have yet (a new KPI dimension, a new feature) is added
            have = set(columns(con, table))
            for name, typ, *_ in con.execute(f"DESCRIBE {src}").fetchall():
                if name not in have:
                    con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {typ}')
            con.execute(f"DELETE FROM {table} WHERE {day_expr} = ?", [day])
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {src}")
        else:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM {src}")


def hash_sample(column: str, share: float, salt: str = "") -> str:
    """A predicate keeping about ``share`` of the distinct values of ``column`` (and every row of
    each): the same values in every run, in any row order and on every engine, so a sample of
    customers is stable (crm_platform.core.dialect.stable_sample)."""
    value = f"CAST({column} AS VARCHAR) || '{salt}'" if salt else column
    return dialect.stable_sample(value, share)


def frame(con: duckdb.DuckDBPyConnection, query: str, params=None) -> pd.DataFrame:
    """The rows of ``query`` as a pandas DataFrame, converted through Arrow.

    DuckDB's own ``.df()`` makes a Python string of every text value and then copies the columns
    into consolidated blocks: a day's 3.8M next-best-offer candidate rows at 1M customers took 6.7 s
    that way and 0.9 s this way, a feature snapshot of 896,000 customers 2.4 s and 0.6 s. Two things
    come differently from ``.df()``: dates are ``datetime.date`` objects, and integer columns with
    empty values are floats (NaN). Decimals are read as floats, as ``.df()`` reads them."""
    reader = con.sql(query, params=params).arrow()
    table = reader.read_all() if isinstance(reader, pa.RecordBatchReader) else reader
    decimal = [i for i, f in enumerate(table.schema) if pa.types.is_decimal(f.type)]
    for i in decimal:
        table = table.set_column(i, table.schema.field(i).name, table.column(i).cast(pa.float64()))
    # split_blocks: a block per column, no consolidating copy; self_destruct: each column's Arrow
    # memory is freed once it is converted (the table is not used again)
    out = table.to_pandas(split_blocks=True, self_destruct=True)
    # Arrow's allocator keeps what the conversion freed for reuse: given back, the process does not
    # carry it into the steps after (a day's 5.5M orders: 2.1 GB resident afterwards, 0.8 GB given back)
    pa.default_memory_pool().release_unused()
    return out
