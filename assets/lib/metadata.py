"""Metadata helpers shared by the assets: previews, schemas and counts the UI shows."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd

from crm_platform.reports import columns
from crm_platform.governance import pii


def markdown_table(df: pd.DataFrame, max_rows: int = 10, max_width: int = 40, table: str | None = None) -> str:
    """A small markdown table (no extra dependency), long values cut. Columns holding personal data
    are left out (crm_platform.governance.pii: the run history keeps metadata for ever, out of reach
    of an erasure); a note names them."""
    if df.empty:
        return "_no rows_"
    df, hidden = pii.redact(df.head(max_rows), table)
    note = f"\n\n_personal columns not shown: {', '.join(map(str, hidden))}_" if hidden else ""
    if df.columns.empty:
        return "_only personal columns_" + note
    cells = [[_cell(v, max_width) for v in row] for row in df.itertuples(index=False)]
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    return "\n".join([header, rule] + ["| " + " | ".join(r) + " |" for r in cells]) + note


def _cell(v, width: int) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return ""
    s = str(v).replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def table_metadata(con, table: str, preview_rows: int = 10, where: str | None = None) -> dict:
    """Row count, column schema and a preview of a warehouse table (of the rows ``where`` selects,
    e.g. one day of a partitioned table)."""
    rel = f"(SELECT * FROM {table} WHERE {where})" if where else table
    rows = con.execute(f"SELECT count(*) FROM {rel}").fetchall()[0][0]
    cols = con.execute(f"DESCRIBE {table}").fetchall()
    preview = con.sql(f"SELECT * FROM {rel} LIMIT {preview_rows}").df()
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=c[0], type=str(c[1]), description=columns.describe(table, c[0]) or None,
                                    tags=pii.column_tags(c[0])) for c in cols]),
        "dagster/table_name": table,
        "preview": dg.MetadataValue.md(markdown_table(preview, table=table)),
    }


def table_spec(key: dg.AssetKey, description: str, deps, group: str, kinds=frozenset({"duckdb", "sql"})) -> dg.AssetSpec:
    """The spec of one warehouse table written by a multi-asset (owner and tags: assets/policy.py)."""
    return dg.AssetSpec(key, description=description, deps=deps, group_name=group, kinds=set(kinds))


def image(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI (markdown with a data URI)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def table_value(df: pd.DataFrame) -> dg.MetadataValue:
    """A small frame as a Dagster table (shown whole in the UI, each column typed), not markdown."""
    def kind(s: pd.Series) -> str:
        return "int" if pd.api.types.is_integer_dtype(s) else "float" if pd.api.types.is_float_dtype(s) else \
            "bool" if pd.api.types.is_bool_dtype(s) else "string"

    def cell(v):
        if v is None or isinstance(v, float) and v != v:
            return None
        return v.item() if hasattr(v, "item") else v if isinstance(v, (int, float, bool, str)) else str(v)

    schema = dg.TableSchema(columns=[dg.TableColumn(str(c), kind(df[c])) for c in df.columns])
    records = [dg.TableRecord({str(c): cell(v) for c, v in row.items()}) for row in df.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=schema)
