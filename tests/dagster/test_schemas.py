"""Every Pandera check of every staging model passes on real staged data and fails on bad data."""

import re

import duckdb
import pandas as pd
import pytest

import pandera.pandas as pa
from pandera.typing import Series

from crm_platform.contracts.schemas import STAGING_SCHEMAS, Text
from crm_platform.contracts.validation import validate_frame, validate_table

# A value that breaks each kind of column check.
BREAKERS = {
    "isin": lambda stats: "not-a-valid-code",
    "str_matches": lambda stats: "!! not matching !!",
    "greater_than_or_equal_to": lambda stats: _below(stats["min_value"]),
    "less_than_or_equal_to": lambda stats: _above(stats["max_value"]),
    "str_length": lambda stats: "",
}
# Row edits that break each table-level check.
FRAME_BREAKERS = {
    "postcode_fits_country": {"country": "DE", "postcode": "1234567"},
    "discount_within_total": {"discount_amount": 50.0, "total_amount": -60.0},
    "return_date_needs_return": {"returned": False, "returned_at": pd.Timestamp("2026-01-01")},
    "closed_after_opened": {"opened_at": pd.Timestamp("2026-01-02"), "closed_at": pd.Timestamp("2026-01-01")},
    "conversion_matches_stage": {"stage": "lost", "converted_at": pd.Timestamp("2026-01-01")},
}


def _below(v):
    return v - pd.Timedelta(days=1) if isinstance(v, pd.Timestamp) else v - 1


def _above(v):
    return v + pd.Timedelta(days=1) if isinstance(v, pd.Timestamp) else v + 1


@pytest.fixture(scope="module")
def staged(loaded_world):
    con = duckdb.connect(str(loaded_world), read_only=True)
    frames = {name: con.sql(f"SELECT * FROM staging.{name} LIMIT 50").df() for name in STAGING_SCHEMAS}
    yield con, frames
    con.close()


@pytest.mark.parametrize("name", list(STAGING_SCHEMAS))
def test_real_staging_table_passes(staged, name):
    con, _ = staged
    result = validate_table(con, f"staging.{name}", STAGING_SCHEMAS[name])
    assert result.rows > 0
    assert result.passed, result.summary()


def _cases():
    for name, model in STAGING_SCHEMAS.items():
        schema = model.to_schema()
        for col_name, col in schema.columns.items():
            if not col.nullable:
                yield name, col_name, "not_nullable", None
            for check in col.checks:
                yield name, col_name, check.name, BREAKERS[check.name](check.statistics)
        for check in schema.checks:
            # Pandera reports a table-level check by its error message.
            yield name, None, check.error or check.name, FRAME_BREAKERS[check.name]


@pytest.mark.parametrize("name, column, check, bad", list(_cases()),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_check_fails_on_a_crafted_bad_frame(staged, name, column, check, bad):
    _, frames = staged
    model = STAGING_SCHEMAS[name]
    df = frames[name].copy()
    assert validate_frame(df, model).empty
    row = df.index[0]
    for col, value in ({column: bad} if column else bad).items():
        if df[col].dtype == bool or str(df[col].dtype) == "boolean":
            df[col] = df[col].astype(object)
        elif pd.api.types.is_numeric_dtype(df[col]) and value is None:
            df[col] = df[col].astype(object)
        elif pd.api.types.is_integer_dtype(df[col]) or pd.api.types.is_datetime64_any_dtype(df[col]):
            df[col] = df[col].astype(object)
        df.at[row, col] = value
    failures = validate_frame(df, model)
    assert not failures.empty, f"{model.__name__}.{column or ''} {check} did not fire"
    assert failures["check"].astype(str).str.startswith(check).any(), \
        failures[["column", "check"]].to_string()


def test_text_columns_validate_exactly_as_pandera_str_columns():
    """Text (the vectorised str) coerces and fails the same values as Pandera's str, with the same
    failure cases: strings and empties pass untouched, a number becomes its text, a mismatch is
    reported by value."""
    def model(dtype, coerced):
        class M(pa.DataFrameModel):
            code: Series[dtype] = pa.Field(nullable=True, str_matches=r"^K\d+$")
            note: Series[dtype] = pa.Field(nullable=True)

            class Config:
                coerce = coerced
        return M

    frames = {"clean": pd.DataFrame({"code": ["K1", None, "K22"], "note": [None, None, None]}),
              "mixed": pd.DataFrame({"code": ["K1", 7, "X9"], "note": ["a", 3.5, None]})}
    for coerce in (True, False):
        for name, df in frames.items():
            ours, theirs = validate_frame(df.copy(), model(Text, coerce)), validate_frame(df.copy(), model(str, coerce))
            assert (ours.empty, theirs.empty) == (name == "clean", name == "clean")
            pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True))
    numbers = pd.DataFrame({"code": ["K1", None], "note": [3.5, "a"]})
    assert model(Text, True).validate(numbers.copy())["note"].tolist() == ["3.5", "a"]
    assert model(str, True).validate(numbers.copy())["note"].tolist() == ["3.5", "a"]


def orders_copy(loaded_world, tmp_path):
    """A warehouse of its own holding a copy of the staged orders."""
    con = duckdb.connect(str(tmp_path / "copy.duckdb"))
    con.execute(f"ATTACH '{loaded_world}' AS src (READ_ONLY)")
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.orders AS SELECT * FROM src.staging.orders")
    return con


def test_duplicate_keys_fail_over_the_whole_table(loaded_world, tmp_path):
    con = orders_copy(loaded_world, tmp_path)
    con.execute("INSERT INTO staging.orders SELECT * FROM staging.orders LIMIT 1")
    result = validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], chunk_rows=1000)
    assert not result.passed and "unique" in result.summary()


def test_a_large_table_is_validated_on_a_sample_and_its_keys_and_required_values_in_full(loaded_world, tmp_path):
    con = orders_copy(loaded_world, tmp_path)
    n = con.execute("SELECT count(*) FROM staging.orders").fetchall()[0][0]
    clean = validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], max_rows=n // 10)
    assert clean.passed and 0.07 * n < clean.sampled < 0.13 * n and "random sample of" in clean.summary()
    # one duplicated order and one order without a customer: too rare for a sample to be sure to
    # see, found in full
    con.execute("INSERT INTO staging.orders SELECT * FROM staging.orders LIMIT 1")
    con.execute("UPDATE staging.orders SET customer_ref = NULL WHERE order_id = (SELECT max(order_id) FROM staging.orders)")
    result = validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], max_rows=n // 10)
    assert not result.passed and 0 < result.sampled < 0.13 * n
    assert "unique" in result.summary() and "customer_ref: not_nullable" in result.summary()


def test_rows_changed_since_a_passing_validation_are_checked_row_by_row_and_keys_everywhere(loaded_world, tmp_path):
    con = orders_copy(loaded_world, tmp_path)
    through = con.execute("SELECT max(_loaded_at) FROM staging.orders").fetchall()[0][0]
    # a day's delivery of three orders, loaded later
    con.execute("""INSERT INTO staging.orders SELECT * REPLACE ('D' || order_id AS order_id,
        _loaded_at + INTERVAL 1 DAY AS _loaded_at) FROM staging.orders ORDER BY order_id LIMIT 3""")
    only = (f"_loaded_at > TIMESTAMP '{through}'", f"loaded after {through}")
    day = validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], only=only)
    assert day.passed and day.checked == 3 and "row checks on the 3 rows loaded after" in day.summary()
    # a bad delivered row fails; an old row the last validation passed is not read again
    con.execute("UPDATE staging.orders SET total_amount = -1 WHERE order_id = (SELECT min(order_id) FROM staging.orders "
                "WHERE order_id LIKE 'D%')")
    assert not validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], only=only).passed
    con.execute("UPDATE staging.orders SET total_amount = 1 WHERE order_id LIKE 'D%'")
    con.execute("UPDATE staging.orders SET status = 'lost' WHERE order_id = (SELECT min(order_id) FROM staging.orders "
                "WHERE order_id NOT LIKE 'D%')")
    assert validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], only=only).passed
    assert not validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"]).passed
    # keys still hold across old and new rows
    con.execute("UPDATE staging.orders SET status = 'completed' WHERE status = 'lost'")
    con.execute("""INSERT INTO staging.orders SELECT * REPLACE (_loaded_at + INTERVAL 1 DAY AS _loaded_at)
        FROM staging.orders WHERE order_id NOT LIKE 'D%' ORDER BY order_id LIMIT 1""")
    dup = validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], only=only)
    assert not dup.passed and "unique" in dup.summary() and dup.failure_count == 1
    # an old order delivered again is one key twice, whichever of its rows is the changed one
    con.execute("""UPDATE staging.orders SET _loaded_at = _loaded_at - INTERVAL 1 DAY
        WHERE _loaded_at > TIMESTAMP '{}' AND order_id NOT LIKE 'D%'""".format(through))
    con.execute("""UPDATE staging.orders SET _loaded_at = _loaded_at + INTERVAL 1 DAY
        WHERE rowid = (SELECT min(rowid) FROM staging.orders WHERE order_id = (
            SELECT order_id FROM staging.orders GROUP BY 1 HAVING count(*) > 1))""")
    assert "unique" in validate_table(con, "staging.orders", STAGING_SCHEMAS["orders"], only=only).summary()


def test_a_sample_keeps_whole_customers_so_checks_across_their_rows_hold():
    from crm_platform.contracts.schemas import NextBestOffer

    con = duckdb.connect()
    con.execute("CREATE SCHEMA ml")
    con.execute("""CREATE TABLE ml.next_best_offer AS
        SELECT DATE '2026-10-01' AS snapshot_date, printf('C%09d', c) AS customer_id, r AS offer_rank,
               'cat' || r AS category, 0.9 - r / 10 AS offer_probability, NULL::VARCHAR AS suppressed_categories,
               'v0001' AS model_version
        FROM range(10000) a(c), range(1, 4) b(r)""")
    result = validate_table(con, "ml.next_best_offer", NextBestOffer, max_rows=3000)
    assert result.passed and 0 < result.sampled < 4500, result.summary()
    # a customer whose second offer is missing fails, sample or not
    con.execute("DELETE FROM ml.next_best_offer WHERE offer_rank = 2 AND customer_id IN "
                "(SELECT customer_id FROM ml.next_best_offer WHERE hash(customer_id) % 1000000 < 100000)")
    assert not validate_table(con, "ml.next_best_offer", NextBestOffer, max_rows=3000).passed


def test_empty_table_fails(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE SCHEMA staging; CREATE TABLE staging.leads (lead_id VARCHAR)")
    result = validate_table(con, "staging.leads", STAGING_SCHEMAS["leads"])
    assert not result.passed and result.summary() == "staging.leads is empty"


def test_str_matches_answers_every_value_as_python_re_does():
    """The vectorised ``str_matches`` (RE2 in Arrow) against Python's ``re``, on the values where
    the two engines differ: Unicode digits and spaces, a trailing newline before ``$``, vertical
    tabs and separators, patterns RE2 cannot run, flags - and on the project's own patterns."""
    from crm_platform.contracts import regex_check, schemas

    values = pd.Series(["K12", "K١٢", "K1\n", "K 1", "K\v1", "K\x1c1", "K\u00a01", "", "k12", "x@y.de",
                        "a b@y.de", "a\u00a0b@y.de", "+4917012345", "+４9170123456", "shop_1", "Shop", "ü@ä.de",
                        None, "K1" * 500], dtype=object)
    patterns = [r"^K\d+$", r"K\s\d", r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", schemas.E164, schemas.SYSTEM,
                schemas.CUSTOMER_ID, r"^(?=K)\w+$", r"(K)\d\1", re.compile(r"^k\d+$", re.IGNORECASE),
                re.compile(r"^K\d+$")]
    for pattern in patterns:
        expected = values.str.match(pattern, na=False)
        got = regex_check.str_matches(values, pattern)
        assert got.tolist() == expected.tolist(), pattern
    assert regex_check.str_matches(values, r"^K\d+$").tolist()[:4] == [True, True, True, False]
    # and it is what Pandera runs on a pandas column
    assert pa.Check.str_matches("x")._check_fn._function_registry[pd.Series] is regex_check.str_matches

    class M(pa.DataFrameModel):
        code: Series[Text] = pa.Field(nullable=True, str_matches=r"^K\d+$")

    failures = validate_frame(pd.DataFrame({"code": values}), M)
    assert set(failures["failure_case"]) == set(values[~values.str.match(r"^K\d+$", na=True)])
    assert (failures["check"] == r"str_matches('^K\d+$')").all()


def test_every_column_the_business_reads_has_a_description(production_run):
    """The golden records, the feature snapshots, the segments and the scores: each column has a
    description in the Dagster column schema, from one place (crm_platform/reports/columns.py)."""
    import duckdb

    from assets.lib.metadata import table_metadata
    from crm_platform.reports.columns import DESCRIPTIONS
    from crm_platform.core.warehouse import table_exists

    con = duckdb.connect(str(production_run / "warehouse.duckdb"), read_only=True)
    try:
        present = [t for t in DESCRIPTIONS if table_exists(con, t)]      # a model without champion scores nothing
        assert {"core.customers", "features.customer_features", "marts.customer_segments", "ml.churn_scores"} <= set(present)
        for table in present:
            schema = table_metadata(con, table)["dagster/column_schema"]
            missing = [c.name for c in schema.columns if not c.description]
            assert schema.columns and not missing, (table, missing)
        golden = {c.name: c.description for c in table_metadata(con, "core.customers")["dagster/column_schema"].columns}
        assert "most_restrictive" in golden["consent_email"] and "config/survivorship.yaml" in golden["consent_email"]
    finally:
        con.close()
