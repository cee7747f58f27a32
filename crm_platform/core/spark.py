"""The warehouse on Apache Spark: a connection that takes the statements the stages send to DuckDB
and runs them on a Spark session, its tables plain Parquet folders under a warehouse folder.

``SparkWarehouse`` answers the part of DuckDB's connection the stages use - ``execute`` (with
``fetchall`` / ``df``), ``sql(...).arrow()``, ``register`` of a pandas frame, ``create_function``
of a vectorized Python function - so a stage's code runs on either engine unchanged; each statement
is translated by crm_platform.core.dialect. What DuckDB does in place, Spark does by rewriting:

* ``CREATE [OR REPLACE] TABLE s.t AS q``: q is written to a new folder, which then replaces
  ``<warehouse>/s/t`` (q may read the table it replaces); the table is registered in the session's
  catalog over that folder, and found again by the next session.
* ``CREATE TEMP TABLE t AS q``: written to a scratch folder of the session, read back as the
  temporary view ``t`` (a view alone would compute q again at every use).
* ``INSERT INTO t [BY NAME] q``: q's columns in the table's order (by name), appended as files.
* ``DELETE FROM t WHERE c``: the table rewritten without the rows where ``c`` holds.
* ``UPDATE t SET a = e WHERE c``: the table rewritten with ``CASE WHEN c THEN e ELSE a END``;
  ``UPDATE t SET a = s.e FROM s WHERE c`` as a left join of t to s on c (at most one row of s per
  row of t, as in DuckDB), a hash join when c holds an equality - a subquery in SET or WHERE would
  be a nested loop over both tables on Spark.
* ``ALTER TABLE t ADD COLUMN c type``: the table rewritten with the column, null in every row.
* ``BEGIN`` / ``COMMIT`` / ``ROLLBACK``: nothing. Parquet folders have no transactions: a step that
  fails half-way leaves the tables it had replaced, and its next run replaces them again.

Spark Connect (``sc://host:port``) works with the same calls (the similarity functions are Python
UDFs, so the server's Python needs rapidfuzz).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import sqlglot
from sqlglot import exp

from crm_platform.core import spark_dialect as dialect

def _similarity_functions(spark) -> None:
    """DuckDB's ``jaro_winkler_similarity`` and ``damerau_levenshtein`` as Spark SQL functions with
    DuckDB's results: rapidfuzz, the library DuckDB's own implementation comes from, vectorised over
    Arrow batches (pandas UDFs). Splink's jar of Java functions was measured and not taken: its
    Jaro-Winkler gave other values than DuckDB for 18 of 1,770 surname pairs of a generated world,
    which moved the u probabilities of two comparisons (tests/unit/test_dialect.py holds the two
    engines equal)."""
    import numpy as np
    from pyspark.sql.functions import pandas_udf
    from rapidfuzz import process
    from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

    def pairwise(scorer, a: pd.Series, b: pd.Series, dtype) -> np.ndarray:
        missing = (a.isna() | b.isna()).to_numpy()
        left, right = a.fillna("").astype(str).tolist(), b.fillna("").astype(str).tolist()
        out = process.cpdist(left, right, scorer=scorer, dtype=dtype, workers=1) if len(left) else np.array([], dtype)
        return out, missing

    @pandas_udf("double")
    def jaro_winkler_similarity(a: pd.Series, b: pd.Series) -> pd.Series:
        out, missing = pairwise(JaroWinkler.normalized_similarity, a, b, np.float64)
        out = np.where((a.fillna("x") == "") & (b.fillna("x") == ""), 0.0, out)   # DuckDB: two empty texts 0
        return pd.Series(np.where(missing, np.nan, out))

    @pandas_udf("int")
    def damerau_levenshtein(a: pd.Series, b: pd.Series) -> pd.Series:
        out, missing = pairwise(DamerauLevenshtein.distance, a, b, np.int32)
        return pd.Series(out).astype("Int32").mask(missing)

    # names of their own: Spark's built-in functions take precedence over a temporary one of the same name
    spark.udf.register("crm_jaro_winkler", jaro_winkler_similarity)
    spark.udf.register("crm_damerau_levenshtein", damerau_levenshtein)


def session(master: str = "local[2]", memory: str = "4g", partitions: int = 8, conf: dict | None = None):
    """A Spark session for the platform: ``master`` a ``local[N]``, a standalone ``spark://`` URL or
    a Spark Connect ``sc://`` address; UTC, DuckDB-like (non-ANSI) arithmetic, Arrow for pandas,
    DuckDB's string-similarity functions."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("crm_platform")
    if master.startswith("sc://"):
        builder = builder.remote(master)
    else:
        # the Python workers run this interpreter (its packages: rapidfuzz, pandas), not the PATH's python3
        builder = (builder.master(master).config("spark.driver.memory", memory).config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false").config("spark.pyspark.python", sys.executable))
    for key, value in {"spark.sql.shuffle.partitions": str(partitions), "spark.sql.session.timeZone": "UTC",
                       "spark.sql.ansi.enabled": "false", "spark.sql.execution.arrow.pyspark.enabled": "true",
                       **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not master.startswith("sc://"):
        spark.sparkContext.setLogLevel("ERROR")
    _similarity_functions(spark)
    return spark


class SparkResult:
    """The rows of a statement, as DuckDB's result gives them."""

    def __init__(self, frame=None):
        self._frame = frame

    def fetchall(self) -> list[tuple]:
        return [] if self._frame is None else [tuple(r) for r in self._frame.collect()]

    def fetchone(self):
        rows = [] if self._frame is None else self._frame.limit(1).collect()
        return tuple(rows[0]) if rows else None

    def df(self) -> pd.DataFrame:
        return pd.DataFrame() if self._frame is None else self._frame.toPandas()

    def arrow(self) -> pa.Table:
        return pa.table({}) if self._frame is None else self._frame.toArrow()


class SparkWarehouse:
    """A connection to the warehouse folder ``folder`` through ``spark`` (module doc)."""

    engine = "spark"

    def __init__(self, spark, folder: Path | str):
        self.spark = spark
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scratch = self.folder / "_scratch" / uuid.uuid4().hex[:12]
        self._temp: set[str] = set()
        for schema in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("_")):
            self._sql(f"CREATE DATABASE IF NOT EXISTS {schema.name}")
            for table in sorted(t for t in schema.iterdir() if (t / "_SUCCESS").exists()):
                self._register(f"{schema.name}.{table.name}")

    # -- DuckDB's connection API -------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> SparkResult:
        result = SparkResult()
        for tree in dialect.statements(sql, params):
            result = self._statement(self._union_by_name(self._files_as_views(tree)))
        return result

    def _statement(self, tree: exp.Expression) -> SparkResult:
        if isinstance(tree, (exp.Transaction, exp.Commit, exp.Rollback)):
            return SparkResult()
        if isinstance(tree, exp.Create):
            return self._create(tree)
        if isinstance(tree, exp.Drop):
            return self._drop(tree)
        if isinstance(tree, exp.Insert):
            return self._insert(tree)
        if isinstance(tree, exp.Delete):
            return self._delete(tree)
        if isinstance(tree, exp.Update):
            return self._update(tree)
        if isinstance(tree, exp.Alter):
            return self._alter(tree)
        return SparkResult(self._sql(dialect.to_spark(tree)))

    def dataframe(self, query: str, params: Sequence[Any] | None = None):
        """The Spark DataFrame of a SELECT written for DuckDB, not collected."""
        return self.execute(query, params)._frame

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> SparkResult:
        return self.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    def register(self, name: str, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        # a column of nothing but nulls has no type in Arrow; Spark takes it as text
        for i, field in enumerate(table.schema):
            if pa.types.is_null(field.type):
                table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def create_function(self, name: str, function, parameters=None, return_type=None, type: str = "arrow",
                        null_handling: str = "special", side_effects: bool = False) -> None:
        """A vectorized Python function (pyarrow arrays in, a pyarrow array out, as DuckDB's
        ``type="arrow"`` functions take) as a Spark SQL function of text values."""
        from pyspark.sql.functions import pandas_udf

        def apply(*series: pd.Series) -> pd.Series:
            out = function(*[pa.array(s.astype(object).where(s.notna(), None).tolist(), pa.string()) for s in series])
            return pd.Series(out.to_pylist(), dtype=object)
        self.spark.udf.register(name, pandas_udf(apply, "string"))

    def remove_function(self, name: str) -> None:
        self._sql(f"DROP TEMPORARY FUNCTION IF EXISTS {name}")

    def close(self) -> None:
        for name in list(self._temp):
            self.spark.catalog.dropTempView(name)
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- what the warehouse helpers ask (crm_platform.core.warehouse) ------------------------------------
    def table_exists(self, qualified: str) -> bool:
        schema, name = qualified.split(".")
        return self.spark.catalog.tableExists(f"{schema}.{name}") if self.spark.catalog.databaseExists(schema) else False

    def column_types(self, relation: str) -> dict[str, str]:
        frame = self._sql(dialect.spark_sql(f"SELECT * FROM {relation} LIMIT 0"))
        return {f.name: f.dataType.simpleString().upper() for f in frame.schema.fields}

    def _files_as_views(self, tree: exp.Expression) -> exp.Expression:
        """DuckDB's ``read_csv(path, ...)`` (header, every column text: the one way the stages read
        CSV) and ``read_parquet(path)`` in a FROM: temporary views over Spark's readers."""
        for table in list(tree.find_all(exp.Table)):
            fn = table.this
            if isinstance(fn, exp.ReadCSV):
                path, reader = fn.this.name, lambda p: self.spark.read.option("header", True).csv(p)
            elif isinstance(fn, exp.ReadParquet):
                path, reader = fn.expressions[0].name, self.spark.read.parquet
            else:
                continue
            view = f"_file_{uuid.uuid4().hex[:10]}"
            reader(path).createOrReplaceTempView(view)
            self._temp.add(view)
            fn.replace(exp.to_identifier(view))
        return tree

    def _union_by_name(self, tree: exp.Expression) -> exp.Expression:
        """``a UNION ALL BY NAME b ...``, which Spark SQL lacks: every branch selects the columns
        of all branches in the order first seen, NULL where it has none (their names read off
        Spark's analysis of each branch)."""
        for union in list(tree.find_all(exp.Union)):
            if not union.args.get("by_name") or (isinstance(union.parent, exp.Union) and union.parent.args.get("by_name")):
                continue
            branches, stack = [], [union]
            while stack:
                node = stack.pop()
                if isinstance(node, exp.Union) and node.args.get("by_name"):
                    stack += [node.expression, node.this]
                else:
                    branches.append(node)
            names = [self._sql(dialect.to_spark(self._union_by_name(b.copy()))).columns for b in branches]
            order = list(dict.fromkeys(c for cols in names for c in cols))
            glue = " UNION ALL " if not union.args.get("distinct") else " UNION "
            text = glue.join(
                "SELECT " + ", ".join(f'"{c}"' if c in cols else f'NULL AS "{c}"' for c in order)
                + f" FROM ({b.sql(dialect='duckdb')}) AS _branch{i}" for i, (b, cols) in enumerate(zip(branches, names)))
            union.replace(sqlglot.parse_one(text, read="duckdb"))
        return tree

    # -- statements --------------------------------------------------------------------------------------
    def _sql(self, sql: str):
        return self.spark.sql(sql)

    def _location(self, qualified: str) -> Path:
        schema, name = qualified.split(".")
        return self.folder / schema / name

    def _register(self, qualified: str) -> None:
        self._sql(f"DROP TABLE IF EXISTS {qualified}")
        self._sql(f"CREATE TABLE {qualified} USING parquet LOCATION '{self._location(qualified).as_posix()}'")

    def _write(self, frame, target: Path, mode: str = "overwrite") -> None:
        frame.write.mode(mode).parquet(target.as_posix())

    def _replace(self, qualified: str, frame) -> None:
        """``frame`` as the table ``qualified``: written aside first (it may read the table)."""
        target = self._location(qualified)
        fresh = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        self._write(frame, fresh)
        old = target.with_name(f".{target.name}.old") if target.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(fresh, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._register(qualified)

    def _temp_table(self, name: str, frame) -> None:
        previous = self._temp_path(name)
        target = self.scratch / f"{name}.{uuid.uuid4().hex[:8]}"
        self._write(frame, target)
        self.spark.read.parquet(target.as_posix()).createOrReplaceTempView(name)
        self._temp.add(name)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)

    def _temp_path(self, name: str) -> Path | None:
        found = sorted(self.scratch.glob(f"{name}.*")) if self.scratch.exists() else []
        return found[0] if found else None

    def _empty(self, tree: exp.Create):
        """The empty frame of a ``CREATE TABLE t (column type, ...)``."""
        schema = tree.this
        cols = ", ".join(f"CAST(NULL AS {c.args['kind'].sql(dialect='spark')}) AS {c.name}"
                         for c in schema.expressions if isinstance(c, exp.ColumnDef))
        return self._sql(f"SELECT {cols} WHERE false")

    def _create(self, tree: exp.Create) -> SparkResult:
        kind = (tree.args.get("kind") or "").upper()
        if kind == "SCHEMA":
            self._sql(f"CREATE DATABASE IF NOT EXISTS {tree.this.sql(dialect='spark')}")
            return SparkResult()
        props = tree.args.get("properties")
        temporary = props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions)
        table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        name = table.sql(dialect="spark")
        query = tree.expression
        if kind == "VIEW":
            self._sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {dialect.to_spark(query)}")
            self._temp.add(name)
            return SparkResult()
        exists = self._temp_path(name) is not None if temporary else ("." in name and self.table_exists(name))
        if exists and tree.args.get("exists"):          # CREATE TABLE IF NOT EXISTS
            return SparkResult()
        if exists and not tree.args.get("replace"):
            raise ValueError(f"table {name} already exists")
        frame = self._sql(dialect.to_spark(query)) if query is not None else self._empty(tree)
        if temporary:
            self._temp_table(name, frame)
        else:
            self._sql(f"CREATE DATABASE IF NOT EXISTS {name.split('.')[0]}")
            self._replace(name, frame)
        return SparkResult()

    def _drop(self, tree: exp.Drop) -> SparkResult:
        for table in tree.args.get("tables") or [tree.this]:
            self._drop_one(table.sql(dialect="spark"), bool(tree.args.get("exists")))
        return SparkResult()

    def _drop_one(self, name: str, if_exists: bool) -> None:
        if "." not in name:
            path = self._temp_path(name)
            if path is None and not if_exists and name not in self._temp:
                raise ValueError(f"no table {name}")
            self.spark.catalog.dropTempView(name)
            self._temp.discard(name)
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
            return
        if not self.table_exists(name):
            if if_exists:
                return
            raise ValueError(f"no table {name}")
        self._sql(f"DROP TABLE {name}")
        shutil.rmtree(self._location(name), ignore_errors=True)

    @staticmethod
    def _name(table: exp.Table) -> str:
        return ".".join(p for p in (table.db, table.name) if p)

    def _rewrite_table(self, name: str, frame) -> None:
        """``frame`` (which may read the table) in place of the table or temporary table ``name``."""
        if "." in name:
            self._replace(name, frame)
        else:
            self._temp_table(name, frame.localCheckpoint())

    def _columns_of(self, name: str) -> list[str]:
        return [f.name for f in self.spark.table(name).schema.fields]

    def _insert(self, tree: exp.Insert) -> SparkResult:
        target = tree.this
        listed = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else None
        name = (target.this if isinstance(target, exp.Schema) else target).sql(dialect="spark")
        have = self._columns_of(name)
        query = tree.expression
        if isinstance(query, exp.Values):
            frame = self._sql(f"SELECT * FROM {query.sql(dialect='spark')}")
        else:
            frame = self._sql(dialect.to_spark(query))
        given = frame.columns
        if tree.args.get("by_name"):
            extra = [c for c in given if c not in have]
            if extra:
                raise ValueError(f"INSERT INTO {name} BY NAME: the table has no column {', '.join(extra)}")
            cols = [f"`{c}`" if c in given else "NULL" for c in have]
        else:               # by position: the query's own column names may repeat (two NULLs)
            names = listed or have[:len(given)]
            frame = frame.toDF(*[f"_c{i}" for i in range(len(given))])
            pos = {n: i for i, n in enumerate(names)}
            cols = [f"`_c{pos[c]}`" if c in pos else "NULL" for c in have]
        types = {f.name: f.dataType.simpleString() for f in self.spark.table(name).schema.fields}
        frame = frame.selectExpr(*[f"CAST({e} AS {types[c]}) AS `{c}`" for e, c in zip(cols, have)])
        if "." in name:
            self._write(frame, self._location(name), mode="append")
            self.spark.catalog.refreshTable(name)
        else:
            self._temp_table(name, self._sql(f"SELECT * FROM {name}").unionByName(frame).localCheckpoint())
        return SparkResult()

    def _delete(self, tree: exp.Delete) -> SparkResult:
        table = tree.this
        name = self._name(table)
        alias = table.alias or table.name
        where = tree.args.get("where")
        cond = dialect.to_spark(where.this) if where is not None else "true"
        using = tree.args.get("using") or []
        if using:          # DELETE FROM t USING n WHERE c: the rows of t for which no row of n meets c
            sources = ", ".join(u.sql(dialect="spark") for u in using)
            cond = f"EXISTS (SELECT 1 FROM {sources} WHERE {cond})"
        frame = self._sql(f"SELECT {alias}.* FROM {name} {alias} WHERE NOT coalesce(({cond}), false)")
        self._rewrite_table(name, frame)
        return SparkResult()

    def _update(self, tree: exp.Update) -> SparkResult:
        table = tree.this
        name = self._name(table)
        alias = table.alias or table.name
        where = tree.args.get("where")
        condition = dialect.to_spark(where.this) if where is not None else "true"
        cond = f"coalesce(({condition}), false)"
        sets = {e.this.name: dialect.to_spark(e.expression) for e in tree.expressions}
        source = f"{name} {alias}"
        joined = tree.args.get("from_")
        if joined is not None:   # UPDATE t SET .. FROM s WHERE c: a left join on c (a hash join where c has an equality)
            other = joined.this
            other_alias = other.alias_or_name
            inner = other.this if isinstance(other, exp.Subquery) else other
            inner_sql = self._name(inner) if isinstance(inner, exp.Table) else f"({dialect.to_spark(inner)})"
            source = (f"{name} {alias} LEFT JOIN (SELECT *, true AS `__hit` FROM {inner_sql}) {other_alias} "
                      f"ON {condition}")
            cond = f"coalesce({other_alias}.`__hit`, false)"
        cols = [f"CASE WHEN {cond} THEN {sets[c]} ELSE {alias}.`{c}` END AS `{c}`" if c in sets else f"{alias}.`{c}`"
                for c in self._columns_of(name)]
        frame = self._sql(f"SELECT {', '.join(cols)} FROM {source}")
        self._rewrite_table(name, frame)
        return SparkResult()

    def _alter(self, tree: exp.Alter) -> SparkResult:
        name = self._name(tree.this)
        have = self._columns_of(name)
        added = []
        for action in tree.args.get("actions") or []:
            if not isinstance(action, exp.ColumnDef):
                raise NotImplementedError(f"ALTER TABLE on Spark adds columns only: {tree.sql(dialect='duckdb')}")
            if action.name in have:
                if action.args.get("exists"):
                    continue
                raise ValueError(f"table {name} already has a column {action.name}")
            added.append(f"CAST(NULL AS {action.args['kind'].sql(dialect='spark')}) AS `{action.name}`")
        if added:
            frame = self._sql(f"SELECT *, {', '.join(added)} FROM {name}")
            self._rewrite_table(name, frame)
        return SparkResult()


def publish(con, tables: Sequence[str], folder: Path | str) -> dict[str, int]:
    """DuckDB tables (``schema.name``) as Parquet tables of the Spark warehouse ``folder``: the
    hand-off from the stages that stay embedded (ingestion) to the ones that run on Spark. Each
    is written beside its old folder and then takes its place; returns the row count of each."""
    folder = Path(folder).resolve()
    rows = {}
    for table in tables:
        schema, name = table.split(".")
        target = folder / schema / name
        fresh = target.with_name(f".{name}.{uuid.uuid4().hex[:8]}")
        fresh.mkdir(parents=True)
        con.execute(f"COPY (SELECT * FROM {table}) TO '{(fresh / 'part-0.parquet').as_posix()}' (FORMAT parquet)")
        (fresh / "_SUCCESS").touch()
        if target.exists():
            shutil.rmtree(target)
        os.replace(fresh, target)
        rows[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return rows


