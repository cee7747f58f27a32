"""Validate a warehouse table against its Pandera model, in bounded memory.

The table is streamed in chunks of Arrow record batches; each chunk is validated lazily so every
failure is collected, not only the first. Keys in the model's ``Config.unique`` are checked over the
whole table in SQL, because a chunk only sees part of it. An empty table fails: a check that passes
on no data proves nothing.

Tables over ``MAX_ROWS`` rows (the timeline of a million customers holds tens of millions) are
validated row by row on a sample of about ``MAX_ROWS`` rows, drawn by hash of the customer (or
order) so a customer's rows are validated together; their unique keys and the columns that must not
be empty are still checked on every row, in SQL. The result says so.

``only`` (a SQL condition) restricts the row-by-row checks to the rows it holds - the rows
changed since a validation that passed, for a table built incrementally - while unique keys are
still checked over every row. The result says which rows were checked row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pandas as pd
import pandera.errors
import pandera.pandas as pa
import pyarrow

from crm_platform.core.warehouse import columns, hash_sample

MAX_FAILURE_ROWS = 20
MAX_ROWS = 1_000_000


@dataclass
class ValidationResult:
    table: str
    rows: int
    failure_count: int = 0
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    messages: list[str] = field(default_factory=list)
    allow_empty: bool = False
    empty_note: str = "nothing to record this run"   # why an allowed empty table is right
    sampled: int = 0                  # rows validated row by row when not all of them were
    only: str = ""                    # which rows the row checks were limited to (words), if they were
    checked: int = 0                  # rows the row checks were limited to

    @property
    def scope(self) -> str:
        if self.only:
            return (f" (row checks on the {self.checked:,} rows {self.only}"
                    f"{f', a random sample of {self.sampled:,} of them' if self.sampled else ''}; their keys unique "
                    f"among all rows)")
        return (f" (row checks on a random sample of {self.sampled:,}; unique keys and required values on "
                f"all rows)") if self.sampled else ""

    @property
    def passed(self) -> bool:
        return (self.rows > 0 or self.allow_empty) and self.failure_count == 0 and not self.messages

    def summary(self) -> str:
        if self.rows == 0:
            return f"{self.table} is empty" + (f" (allowed: {self.empty_note})" if self.allow_empty else "")
        if self.passed:
            return f"{self.table}: {self.rows} rows pass{self.scope}"
        by_check = (self.failures.groupby(["column", "check"], dropna=False).size()
                    .sort_values(ascending=False).head(5).to_dict()) if len(self.failures) else {}
        parts = [f"{c or 'table'}: {k} ({n})" for (c, k), n in by_check.items()] + self.messages
        return f"{self.table}: {self.failure_count} failures{self.scope} - " + "; ".join(parts)


def validate_frame(df: pd.DataFrame, model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """Failure cases of one frame (empty when it passes)."""
    try:
        model.validate(df, lazy=True)
    except pandera.errors.SchemaErrors as e:
        return e.failure_cases
    return pd.DataFrame(columns=["schema_context", "column", "check", "check_number",
                                 "failure_case", "index"])


def _chunks(con, table: str, chunk_rows: int, sample: str = ""):
    """DataFrames of about ``chunk_rows`` rows each, streamed from DuckDB through Arrow; of the
    rows ``sample`` (a WHERE or USING SAMPLE clause) keeps when given."""
    pending, size = [], 0
    for batch in con.sql(f"SELECT * FROM {table} {sample}").to_arrow_reader(chunk_rows):
        pending.append(batch)
        size += batch.num_rows
        if size >= chunk_rows:
            yield pyarrow.Table.from_batches(pending).to_pandas()
            pending, size = [], 0
    if pending:
        yield pyarrow.Table.from_batches(pending).to_pandas()


# a sample keeps whole customers (or orders): a check across a customer's rows (ranks 1, 2, 3 of
# an offer list, credits of an order summing to one) sees all of them
GROUP_KEYS = ("customer_id", "order_id")


def _sample_clause(con, table: str, share: float) -> str:
    """A clause keeping about ``share`` of the rows: whole groups by the hash of their key (the same
    ones every run), or a seeded random sample of rows in a table without one."""
    present = set(columns(con, table))
    key = next((k for k in GROUP_KEYS if k in present), None)
    if key is None:
        return f"USING SAMPLE {share * 100:.6f}% (bernoulli, 42)"
    return f"WHERE {hash_sample(key, share)}"


def validate_table(con: duckdb.DuckDBPyConnection, table: str, model: type[pa.DataFrameModel],
                   chunk_rows: int = 1_000_000, allow_empty: bool = False,
                   max_rows: int = MAX_ROWS, only: tuple[str, str] | None = None,
                   empty_note: str = "") -> ValidationResult:
    """``allow_empty`` is for tables that rightly hold nothing some runs (a review queue), with
    ``empty_note`` saying why; ``only``: (SQL condition, the same in words) of the rows to check row
    by row."""
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    result = ValidationResult(table, rows, allow_empty=allow_empty)
    if empty_note:
        result.empty_note = empty_note
    if rows == 0:
        if not allow_empty:
            result.messages.append("table is empty")
        return result
    source = table
    if only:
        source = f"(SELECT * FROM {table} WHERE {only[0]})"
        result.only, result.checked = only[1], con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
    frames = []
    offset = 0
    share = min(1.0, max_rows / max(result.checked if only else rows, 1))
    required = _required_values(con, source, model, result) if share < 1 else pd.DataFrame()
    if len(required):
        frames.append(required)
    for df in _chunks(con, source, chunk_rows, _sample_clause(con, source, share) if share < 1 else ""):
        df.index = pd.RangeIndex(offset, offset + len(df))
        offset += len(df)
        fails = validate_frame(df, model)
        if len(fails):
            result.failure_count += len(fails)
            frames.append(fails.head(MAX_FAILURE_ROWS))
    result.sampled = offset if share < 1 else 0
    unique = getattr(model.Config, "unique", None)
    if unique:
        cols = ", ".join(unique)
        keyed = table
        if only:
            # the last validation found every key once: a key can now be twice only if one of its
            # rows changed since, so only the keys of changed rows are counted (over every row)
            on = " AND ".join(f"t.{c} IS NOT DISTINCT FROM k.{c}" for c in unique)
            keyed = (f"(SELECT t.* FROM {table} t SEMI JOIN (SELECT DISTINCT {cols} FROM {table} "
                     f"WHERE {only[0]}) k ON {on})")
        # a repeated key has a repeated hash: the keys are compared only among the rows whose
        # 64-bit hash is repeated (over 35M events a third quicker than grouping the key texts)
        keyed = (f"(SELECT * FROM {keyed} WHERE hash({cols}) IN (SELECT h FROM (SELECT hash({cols}) AS h "
                 f"FROM {keyed} GROUP BY 1 HAVING count(*) > 1)))")
        dupes = con.execute(
            f"SELECT {cols}, count(*) AS n FROM {keyed} GROUP BY ALL HAVING count(*) > 1 "
            f"ORDER BY n DESC LIMIT {MAX_FAILURE_ROWS}").df()
        if len(dupes):
            total = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {keyed} GROUP BY ALL "
                                "HAVING count(*) > 1)").fetchall()[0][0]
            result.failure_count += total
            frames.append(pd.DataFrame({"schema_context": "DataFrameSchema", "column": cols,
                                        "check": "unique", "failure_case": dupes.iloc[:, :-1]
                                        .astype(str).agg("|".join, axis=1), "index": None}))
    if frames:
        result.failures = pd.concat(frames, ignore_index=True).head(MAX_FAILURE_ROWS * 5)
    return result


def _required_values(con, table: str, model: type[pa.DataFrameModel], result: ValidationResult) -> pd.DataFrame:
    """Empty values in the model's non-nullable columns, counted over every row of the table (the
    row-by-row validation of a large table sees a sample only)."""
    present = set(columns(con, table))
    required = [n for n, c in model.to_schema().columns.items() if not c.nullable and n in present]
    if not required:
        return pd.DataFrame()
    # count(column) counts the non-empty values from the column's validity alone (often from its
    # statistics): far quicker than a filter that reads the values
    total, *filled = con.execute("SELECT count(*), " + ", ".join(f'count("{c}")' for c in required)
                                 + f" FROM {table}").fetchall()[0]
    empty = {c: total - n for c, n in zip(required, filled) if total - n}
    result.failure_count += sum(empty.values())
    return pd.DataFrame({"schema_context": "Column", "column": list(empty), "check": "not_nullable",
                         "failure_case": [f"{n:,} empty values" for n in empty.values()], "index": None})
