"""The platform's SQL on Spark: the stages write DuckDB SQL once, and this layer turns a
statement into Spark SQL - sqlglot transpiles it, and the functions sqlglot leaves in DuckDB's
spelling (or maps to a Spark function of other meaning) are rewritten here, as Splink's dialect
layer does (splink/internals/dialects.py).

The rewrites, each checked against DuckDB by tests/unit/test_dialect.py on both engines:

===============================  =====================================================
DuckDB                           Spark
===============================  =====================================================
jaro_winkler_similarity(a, b)    crm_jaro_winkler(a, b): rapidfuzz's, which DuckDB's is (core.spark)
damerau_levenshtein(a, b)        crm_damerau_levenshtein(a, b): rapidfuzz's
list_intersect(a, b)             array_intersect(a, b)
list_has_any(a, b)               arrays_overlap(array_compact(a), array_compact(b))
array_length(a), len(list_...)   size(a)
list_distinct(a)                 array_distinct(array_compact(a)): DuckDB's drops nulls
list_sort(a with a subquery)     sort_array(a): array_sort takes no subquery in Spark
quantile_cont(x, q), percentile_  percentile(x, q): exact, as DuckDB's (not percentile_approx)
cont(q) WITHIN GROUP (ORDER BY x)
hash(...)                        refused: write crm_platform.core.dialect.stable_hash
? and $name parameters          literals (Spark SQL takes no positional parameters)
UNION ALL BY NAME                by position, columns aligned by crm_platform.core.spark
===============================  =====================================================
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import sqlglot
from sqlglot import exp

# DuckDB functions sqlglot keeps by name that Spark spells otherwise (lower-case DuckDB name ->
# Spark function name; the similarity functions are registered by crm_platform.core.spark)
RENAMED = {
    "damerau_levenshtein": "crm_damerau_levenshtein",
    "list_intersect": "array_intersect",
}


def literal(value: Any) -> str:
    """A Python value as a DuckDB SQL literal of the type DuckDB binds it as."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        # a DOUBLE, as DuckDB binds a Python float (Spark reads 0.0018 as a DECIMAL)
        return f"CAST('{value!r}' AS DOUBLE)"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMP)"
    if isinstance(value, dt.date):
        return f"CAST('{value.isoformat()}' AS DATE)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def bind(sql: str, params: Sequence[Any] | dict[str, Any] | None) -> str:
    """``sql`` with its parameters - ``?`` in order, or ``$name`` from a dict - replaced by
    literals (found by DuckDB's tokenizer, so a question mark inside a text is left alone)."""
    if not params:
        return sql
    from sqlglot.dialects.duckdb import DuckDB

    tokens = DuckDB().tokenize(sql)
    spots: list[tuple[int, int, Any]] = []
    if isinstance(params, dict):
        for here, after in zip(tokens, tokens[1:]):
            if here.token_type.name == "PARAMETER" and after.text in params:
                spots.append((here.start, after.end + 1, params[after.text]))
    else:
        # '?::TIMESTAMP' is one token (a placeholder and a cast)
        found = [t for t in tokens if t.text.startswith("?") and t.token_type.name in ("PLACEHOLDER", "QDCOLON")]
        if len(found) != len(params):
            raise ValueError(f"{len(found)} placeholders, {len(params)} parameters")
        spots = [(t.start, t.start + 1, v) for t, v in zip(found, params)]
    out, pos = [], 0
    for start, end, value in spots:
        out.append(sql[pos:start])
        out.append(f"({literal(value)})")
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def parse(sql: str, params: Sequence[Any] | None = None) -> exp.Expression:
    """One DuckDB statement as a sqlglot tree, parameters bound."""
    return sqlglot.parse_one(bind(sql, params), read="duckdb")


def statements(sql: str, params: Sequence[Any] | None = None) -> list[exp.Expression]:
    """The DuckDB statements of ``sql`` (separated by semicolons) as sqlglot trees, parameters bound."""
    return [t for t in sqlglot.parse(bind(sql, params), read="duckdb") if t is not None]


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Anonymous) and node.name.lower() in RENAMED:
        return exp.Anonymous(this=RENAMED[node.name.lower()], expressions=[a.transform(_rewrite) for a in node.expressions])
    if isinstance(node, exp.JarowinklerSimilarity):
        return exp.Anonymous(this="crm_jaro_winkler", expressions=[a.transform(_rewrite) for a in (node.this, node.expression)])
    if isinstance(node, exp.ArrayOverlaps):
        # DuckDB's list_has_any ignores nulls; Spark's arrays_overlap is null when one holds a null
        return exp.Anonymous(this="arrays_overlap", expressions=[
            exp.Anonymous(this="array_compact", expressions=[a.transform(_rewrite)]) for a in (node.this, node.expression)])
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        # percentile_cont(q) WITHIN GROUP (ORDER BY x): Spark's exact percentile (sqlglot writes
        # the approximate one)
        column = node.expression.expressions[0].this
        return exp.Anonymous(this="percentile", expressions=[column.transform(_rewrite), node.this.this])
    if isinstance(node, exp.PercentileCont) and node.args.get("expression") is not None:
        # quantile_cont(x, q or [q, ...]): linear interpolation, as Spark's percentile
        return exp.Anonymous(this="percentile", expressions=[node.this.transform(_rewrite), node.expression])
    if isinstance(node, exp.ArrayDistinct):
        # DuckDB's list_distinct drops nulls, Spark's array_distinct keeps one
        return exp.ArrayDistinct(this=exp.Anonymous(this="array_compact", expressions=[node.this.transform(_rewrite)]))
    if isinstance(node, exp.ArraySort) and node.this.find(exp.Subquery, exp.Select):
        # Spark's array_sort is a higher-order function, which takes no subquery; sort_array is
        # none (it puts nulls first, DuckDB's list_sort last: the same on lists without nulls)
        return exp.Anonymous(this="sort_array", expressions=[node.this.transform(_rewrite)])
    if isinstance(node, exp.ArraySize) or (isinstance(node, exp.Length) and _is_list(node.this)):
        return exp.Anonymous(this="size", expressions=[node.this.transform(_rewrite)])
    return node


LIST_FUNCTIONS = (exp.ArrayIntersect, exp.ArrayDistinct, exp.ArrayConcat, exp.ArraySort, exp.Array, exp.ArrayAgg)


def _is_list(node: exp.Expression) -> bool:
    """Whether ``node`` is a list by its own spelling (``len(list_distinct(...))``): DuckDB's len
    counts a list's elements, Spark's length only a text's characters."""
    if isinstance(node, LIST_FUNCTIONS):
        return True
    return isinstance(node, exp.Anonymous) and node.name.lower().startswith(("list_", "array_"))


def to_spark(tree: exp.Expression) -> str:
    """A DuckDB statement's tree (``parse``) as Spark SQL."""
    if any(isinstance(n, exp.Anonymous) and n.name.lower() == "hash" for n in tree.walk()):
        raise ValueError("hash() differs between engines: write crm_platform.core.dialect.stable_hash(...)")
    return tree.transform(_rewrite).sql(dialect="spark")


def spark_sql(sql: str, params: Sequence[Any] | None = None) -> str:
    """``sql`` (one DuckDB statement) as Spark SQL."""
    return to_spark(parse(sql, params))
