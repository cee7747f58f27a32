"""Parsing and row rules of a landing file, as SQL over the text columns of ``_in``: canonical types,
derived columns, duplicate keys and every rule a row or a value breaks, with the reason."""

from __future__ import annotations

import re


from crm_platform.core import standardize
from crm_platform.contracts.entities import Column
from crm_platform.ingest.sources import Dataset, Derivation

EMAIL_PATTERN = r"^[^@\s,;<>()\[\]]+@[^@\s,;<>()\[\]]+\.[a-zA-Z]{2,}$"
TRUE_WORDS = ("1", "true", "t", "yes", "y", "ja", "j", "x", "opt-in", "optin", "subscribed")
FALSE_WORDS = ("0", "false", "f", "no", "n", "nein", "opt-out", "optout", "unsubscribed")
# A timestamp a little ahead of the load time is clock skew between systems, not bad data.
FUTURE_TOLERANCE = "INTERVAL 1 HOUR"
# No date a CRM holds (orders, events, sign-ups, birthdays) lies before this: earlier is a typo or a
# placeholder (0001-01-01, 1899-12-30 from spreadsheets).
EARLIEST = "1900-01-01"




_OFFSET = re.compile(r"([+-]\d\d:?\d\d|[zZ])$")


def offset_columns(con, ds: Dataset, ent, typed: set[str] = frozenset()) -> set[str]:
    """The timestamp columns whose first value in the file carries a UTC offset. Every format is
    tried on every value either way; a failed format costs as much as a match, so the kind the
    file writes is tried first."""
    out = set()
    for col in ent.columns:
        src = ds.columns.get(col.name)
        if col.type == "timestamp" and src in ds.source_columns and src not in typed:
            first = con.execute(f'SELECT trim("{dq(src)}") FROM _in WHERE nullif(trim("{dq(src)}"), \'\') '
                                "IS NOT NULL LIMIT 1").fetchall()
            if first and _OFFSET.search(first[0][0]):
                out.add(col.name)
    return out


def _texts(ds: Dataset, ent, file: str = "") -> dict[str, str]:
    """The trimmed text of every canonical column of _in (NULL when empty or not delivered)."""
    raw_cols = set(ds.source_columns)
    out = {}
    for col in ent.columns:
        if col.name in ds.columns:
            src = ds.columns[col.name]
            raw = f'"{dq(src)}"' if src in raw_cols else "NULL::VARCHAR"
        elif col.name in ds.derived:
            raw = _derived_sql(ds.derived[col.name], file)
        elif col.name in ds.constants:
            raw = f"'{sq(ds.constants[col.name])}'"
        else:
            raw = "NULL::VARCHAR"
        out[col.name] = f"nullif(trim({raw}), '')"
    return out


def _derived_sql(d: Derivation, file: str = "") -> str:
    """The text of a derived column (``sources.Derivation``) over _in; ``_file`` and ``_line`` in
    a template are the file's path under landing/ and the record's line."""
    def cell(c):
        return {"_file": f"'{sq(file)}'", "_line": "_source_line::VARCHAR"}.get(c, f"""nullif(trim("{dq(c)}"), '')""")
    if d.kind == "map":
        cases = " ".join(f"WHEN '{sq(k)}' THEN '{sq(v)}'" for k, v in d.mapping)
        return f"CASE {cell(d.sources[0])} {cases} ELSE {cell(d.sources[0])} END"
    if d.kind == "part":
        return standardize.name_part_sql(cell(d.sources[0]), d.part)
    # a template: its parts filled in, white space of the empty ones folded; empty if all are
    pieces = re.split(r"\{([^{}]+)\}", d.template)
    sql = " || ".join(f"coalesce({cell(p.strip())}, '')" if i % 2 else f"'{sq(p)}'"
                      for i, p in enumerate(pieces) if p or i % 2)
    filled = " OR ".join(f"{cell(c)} IS NOT NULL" for c in d.sources)
    return f"CASE WHEN {filled} THEN regexp_replace(trim({sql}), '\\s+', ' ', 'g') END"


def parsed_columns(ds: Dataset, ent, with_offset: set[str] = frozenset(), typed: set[str] = frozenset(),
            file: str = "") -> dict[str, str]:
    """The parse expression of every canonical column over _in, as _dups and _v both read it.
    ``with_offset``: timestamp columns to try the formats with a UTC offset on first; ``typed``:
    source columns that were timestamps in the file."""
    text = _texts(ds, ent, file)
    return {col.name: _parse_expr(col, text[col.name], ds, col.name in with_offset, ds.columns.get(col.name) in typed)
            for col in ent.columns}


def duplicates_sql(ent, parsed: dict[str, str]) -> str:
    """SQL creating _dups: the keys delivered more than once in the file, with the first line of
    each. A table of its own, counted over the key texts alone: joined to the parsed rows inside
    one statement it cost a third of the file's validation."""
    keys = ", ".join(f"{parsed[k]} AS {k}" for k in ent.key)
    key_set = " AND ".join(f"{k} IS NOT NULL" for k in ent.key)
    return f"""CREATE OR REPLACE TEMP TABLE _dups AS
        SELECT * EXCLUDE (_n) FROM (SELECT {keys}, min(_source_line) AS _first_line, count(*) AS _n
                                    FROM _in GROUP BY ALL) WHERE _n > 1 AND {key_set}"""


def validation_sql(ds: Dataset, ent, parsed: dict[str, str], file: str = "") -> str:
    """SQL creating _v: the parsed canonical columns (``parsed``), the line, the reasons a row is
    kept out (``_reason``) and the values set to NULL (``_fields``: field and reason).

    A broken rule on a key or required column keeps the whole row out: the record cannot exist
    without it. Any other broken rule - a birth date in 1850, a malformed e-mail or phone, a
    postcode not of its country, a code outside its set - sets that value to NULL, and the row
    loads. Only what is loaded is kept; the raw text of a bad row is read back from _in when it is
    quarantined. Duplicate keys come from _dups (``duplicates_sql``)."""
    texts, reasons, text_of = [], [], _texts(ds, ent, file)
    checked, fields = [], []
    for col in ent.columns:
        texts.append(f"{text_of[col.name]} AS _t_{col.name}")
        rules = _row_rules(col, ds)
        if col.required or col.name in ent.key or not rules:
            reasons.extend(rules)
            checked.append(col.name)
        else:
            checked.append(f"CASE WHEN _f_{col.name} = '' THEN {col.name} END AS {col.name}")
            fields.append(f"concat_ws('; ', {', '.join(rules)}) AS _f_{col.name}")
    field_list = "[" + ", ".join(f"{{'field': '{c.name}', 'reason': _f_{c.name}}}" for c in ent.columns
                                 if f"AS _f_{c.name}" in " ".join(fields)) + "]"
    keys = ", ".join(ent.key)
    reasons.append(
        f"CASE WHEN _first_line IS NOT NULL AND _first_line <> _source_line THEN "
        f"'duplicate key ({keys}) in file: first seen at line ' || _first_line END")
    return f"""
        CREATE OR REPLACE TEMP TABLE _v AS
        WITH parsed AS (
            SELECT _source_line, {', '.join(f"{e} AS {n}" for n, e in parsed.items())}, {', '.join(texts)} FROM _in
        ), judged AS (
            SELECT *{''.join(', ' + f for f in fields)}, concat_ws('; ', {', '.join(reasons)}) AS _reason
            FROM parsed LEFT JOIN _dups USING ({keys}), (SELECT ?::TIMESTAMP AS _as_of)
        )
        SELECT {', '.join(checked)}, _source_line, _reason,
               {'list_filter(' + field_list + ", lambda x: x.reason <> '')" if fields else "[]::STRUCT(field VARCHAR, reason VARCHAR)[]"} AS _fields
        FROM judged
    """


def record_sql(ds: Dataset) -> str:
    """The delivered text of a row of _in, as JSON (what a quarantine row keeps for repair)."""
    return "to_json(struct_pack(" + ", ".join(
        f'"{dq(c)}" := _in."{dq(c)}"' for c in ds.source_columns) + "))::VARCHAR"


def _parse_expr(col: Column, text: str, ds: Dataset, offset_first: bool = False, typed: bool = False) -> str:
    if col.type in ("str", "email"):
        return text
    if col.type == "int":   # '4.0' is 4; '4.5' is not a whole number, not 5 (as a plain cast would round it)
        return f"CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+(\\.0*)?') THEN TRY_CAST({text} AS BIGINT) END"
    if col.type == "decimal":
        cleaned = f"regexp_replace({text}, '[€\\s]|EUR', '', 'g')"
        if ds.decimal_comma:
            cleaned = f"replace(replace({cleaned}, '.', ''), ',', '.')"
        return f"TRY_CAST({cleaned} AS DECIMAL(18,2))"
    if col.type == "bool":
        t = ", ".join(f"'{w}'" for w in TRUE_WORDS)
        f = ", ".join(f"'{w}'" for w in FALSE_WORDS)
        return f"CASE WHEN lower({text}) IN ({t}) THEN true WHEN lower({text}) IN ({f}) THEN false END"
    if col.type == "date":
        fmts = _fmt_list([f for f in ds.date_formats + ds.timestamp_formats if "%z" not in f])
        return f"CAST(try_strptime({text}, {fmts}) AS DATE)"
    if col.type == "timestamp":
        aware = _fmt_list([f for f in ds.timestamp_formats if "%z" in f])
        naive = _fmt_list([f for f in ds.timestamp_formats + ds.date_formats if "%z" not in f])
        # A text matches formats of one kind only, so the order of the kinds is free (see
        # with_offset); the rewriting of ISO 8601 'Z' (UTC) comes last, for what nothing else read.
        local = f"TRY_CAST({text} AS TIMESTAMP)" if typed else f"try_strptime({text}, {naive})"
        if ds.timezone != "UTC":
            local = f"timezone('UTC', timezone('{sq(ds.timezone)}', {local}))"
        if typed:
            return local
        offset = f"timezone('UTC', try_strptime({text}, {aware}))"
        zulu = f"timezone('UTC', try_strptime(regexp_replace({text}, '([0-9])[zZ]$', '\\1+00:00'), {aware}))"
        return f"coalesce({offset}, {local}, {zulu})" if offset_first else f"coalesce({local}, {offset}, {zulu})"
    raise ValueError(col.type)


def _row_rules(col: Column, ds: Dataset | None = None) -> list[str]:
    n, t = col.name, f"_t_{col.name}"
    # a reason names the bad value, unless it is personal data (the record column keeps it for repair)
    shown = "'(value hidden: personal data)'" if col.pii else f"'''' || left({t}, 60) || ''''"
    rules = []
    if col.required:
        rules.append(f"CASE WHEN {t} IS NULL THEN '{n}: missing required value' END")
    if col.type not in ("str", "email"):
        rules.append(f"CASE WHEN {t} IS NOT NULL AND {n} IS NULL THEN "
                     f"'{n}: cannot parse ' || {shown} || ' as {col.type}' END")
    if col.type == "email":
        rules.append(f"CASE WHEN {n} IS NOT NULL AND NOT regexp_full_match({n}, '{EMAIL_PATTERN}')"
                     f" THEN '{n}: malformed email ' || {shown} END")
    if col.non_negative:
        rules.append(f"CASE WHEN {n} < 0 THEN '{n}: negative amount ' || {n} END")
    if col.min is not None:
        rules.append(f"CASE WHEN {n} < {col.min} THEN '{n}: ' || {n} || ' is below {col.min:g}' END")
    if col.max is not None:
        rules.append(f"CASE WHEN {n} > {col.max} THEN '{n}: ' || {n} || ' is above {col.max:g}' END")
    value = shown if col.pii else f"{n}"
    if col.type in ("date", "timestamp"):
        rules.append(f"CASE WHEN {n} < DATE '{EARLIEST}' THEN '{n}: ' || {value} || ' is before {EARLIEST}' END")
    if col.not_future:
        limit = f"_as_of + {FUTURE_TOLERANCE}" if col.type == "timestamp" else "_as_of::DATE"
        rules.append(f"CASE WHEN {n} > {limit} THEN '{n}: ' || {value} || ' is in the future' END")
    if col.country_rule and ds is not None:
        country = f"std_country(_t_country, '{sq(ds.default_country)}')"
        test = {"phone": f"std_phone({t}, {country}) IS NULL", "postcode": f"std_postcode({t}, {country}) IS NULL",
                "country": f"std_country({t}, '') = ''"}[col.country_rule]
        what = {"phone": "is not a phone number of ", "postcode": "is not a postcode of ",
                "country": "is not a country"}[col.country_rule]
        where = f" || {country}" if col.country_rule != "country" else ""
        rules.append(f"CASE WHEN {t} IS NOT NULL AND {test} THEN '{n}: ' || {shown} || ' {what}'{where} END")
    if col.allowed:
        vals = ", ".join(f"'{v}'" for v in col.allowed)
        rules.append(f"CASE WHEN {n} IS NOT NULL AND lower({n}) NOT IN ({vals}) THEN "
                     f"'{n}: ' || {shown} || ' is not one of {'/'.join(col.allowed)}' END")
    return rules


def _fmt_list(fmts: list[str]) -> str:
    return "[" + ", ".join(f"'{sq(f)}'" for f in dict.fromkeys(fmts)) + "]"



def sq(s: str) -> str:
    return s.replace("'", "''")


def dq(s: str) -> str:
    return s.replace('"', '""')
