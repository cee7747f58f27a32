"""Validate a warehouse table against its Pandera model, in bounded memory.

The table is streamed in chunks of Arrow record batches; each chunk is validated lazily so every
failure is collected, not only the first. Keys in the model's ``Config.unique`` are checked over the
whole table in SQL, because a chunk only sees part of it. An empty table fails: a check that passes
on no data proves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pandas as pd
import pandera.errors
import pandera.pandas as pa
import pyarrow

MAX_FAILURE_ROWS = 20


@dataclass
class ValidationResult:
    table: str
    rows: int
    failure_count: int = 0
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    messages: list[str] = field(default_factory=list)
    allow_empty: bool = False

    @property
    def passed(self) -> bool:
        return (self.rows > 0 or self.allow_empty) and self.failure_count == 0 and not self.messages

    def summary(self) -> str:
        if self.rows == 0:
            return f"{self.table} is empty" + (" (allowed: nothing to record this run)" if self.allow_empty else "")
        if self.passed:
            return f"{self.table}: {self.rows} rows pass"
        by_check = (self.failures.groupby(["column", "check"], dropna=False).size()
                    .sort_values(ascending=False).head(5).to_dict()) if len(self.failures) else {}
        parts = [f"{c or 'table'}: {k} ({n})" for (c, k), n in by_check.items()] + self.messages
        return f"{self.table}: {self.failure_count} failures - " + "; ".join(parts)


def validate_frame(df: pd.DataFrame, model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """Failure cases of one frame (empty when it passes)."""
    try:
        model.validate(df, lazy=True)
    except pandera.errors.SchemaErrors as e:
        return e.failure_cases
    return pd.DataFrame(columns=["schema_context", "column", "check", "check_number",
                                 "failure_case", "index"])


def _chunks(con, table: str, chunk_rows: int):
    """DataFrames of about ``chunk_rows`` rows each, streamed from DuckDB through Arrow."""
    pending, size = [], 0
    for batch in con.sql(f"SELECT * FROM {table}").to_arrow_reader(chunk_rows):
        pending.append(batch)
        size += batch.num_rows
        if size >= chunk_rows:
            yield pyarrow.Table.from_batches(pending).to_pandas()
            pending, size = [], 0
    if pending:
        yield pyarrow.Table.from_batches(pending).to_pandas()


def validate_table(con: duckdb.DuckDBPyConnection, table: str, model: type[pa.DataFrameModel],
                   chunk_rows: int = 1_000_000, allow_empty: bool = False) -> ValidationResult:
    """``allow_empty`` is for tables that rightly hold nothing some runs (a review queue)."""
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    result = ValidationResult(table, rows, allow_empty=allow_empty)
    if rows == 0:
        if not allow_empty:
            result.messages.append("table is empty")
        return result
    frames = []
    offset = 0
    for df in _chunks(con, table, chunk_rows):
        df.index = pd.RangeIndex(offset, offset + len(df))
        offset += len(df)
        fails = validate_frame(df, model)
        if len(fails):
            result.failure_count += len(fails)
            frames.append(fails.head(MAX_FAILURE_ROWS))
    unique = getattr(model.Config, "unique", None)
    if unique:
        cols = ", ".join(unique)
        dupes = con.execute(
            f"SELECT {cols}, count(*) AS n FROM {table} GROUP BY ALL HAVING count(*) > 1 "
            f"ORDER BY n DESC LIMIT {MAX_FAILURE_ROWS}").df()
        if len(dupes):
            total = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {table} GROUP BY ALL "
                                "HAVING count(*) > 1)").fetchall()[0][0]
            result.failure_count += total
            frames.append(pd.DataFrame({"schema_context": "DataFrameSchema", "column": cols,
                                        "check": "unique", "failure_case": dupes.iloc[:, :-1]
                                        .astype(str).agg("|".join, axis=1), "index": None}))
    if frames:
        result.failures = pd.concat(frames, ignore_index=True).head(MAX_FAILURE_ROWS * 5)
    return result
