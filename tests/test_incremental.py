"""The daily refresh: a delivery of new files is merged into what is built, with the same result
as building everything again."""

from datetime import date

import duckdb
import pandas as pd
import pytest

from crm_platform import staging
from crm_platform.generator import GeneratorConfig, deliver, generate
from tests.conftest import ingest_all

DAY = date(2026, 9, 30)


def table_digest(con, table: str, leave_out: tuple[str, ...] = ()) -> tuple[int, int]:
    """Rows and an order-independent hash of every row (without the columns left out)."""
    cols = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall() if c not in leave_out]
    return con.execute(f"SELECT count(*), coalesce(sum(hash(({', '.join(cols)}))), 0)::HUGEINT "
                       f"FROM {table}").fetchall()[0]


@pytest.fixture(scope="module")
def delivery_world(tmp_path_factory):
    """1,500 customers, the last 11 days (about 1 % of the rows) held back as a delivery."""
    home = tmp_path_factory.mktemp("delivery")
    generate(GeneratorConfig(customers=1500, seed=11, delivery_days=11), home)
    return home


@pytest.fixture(scope="module")
def staged_twice(delivery_world, demo_sources, tmp_path_factory):
    """The history staged; the delivery (and a correction of an old order) landed, ingested and
    staged incrementally. Returns the connection, the reports of both builds and the digest of
    every staging table after the second."""
    home = delivery_world
    con = duckdb.connect(str(tmp_path_factory.mktemp("daily") / "w.duckdb"))
    ingest_all(con, demo_sources, home)
    first = {e: staging.build(con, demo_sources, e) for e in staging.STAGING_ENTITIES}
    deliver(home, DAY)
    header, line = (home / "landing/shop/orders.csv").read_text().splitlines()[:2]
    fields = line.split(",")
    fields[3] = '"returned"'
    (home / "landing/shop/orders-corrections.csv").write_text(f"{header}\n{','.join(fields)}\n")
    ingest_all(con, demo_sources, home)
    second = {e: staging.build(con, demo_sources, e) for e in staging.STAGING_ENTITIES}
    digests = {e: table_digest(con, f"staging.{e}", ()) for e in staging.STAGING_ENTITIES}
    yield con, first, second, digests
    con.close()


def test_staging_merges_only_the_delivered_files_and_equals_a_full_build(staged_twice, demo_sources):
    con, first, second, digests = staged_twice
    assert {r.mode for r in first.values()} == {"full"}
    for e, rep in second.items():
        assert rep.mode == "incremental", (e, rep.reason)
        assert rep.rows_read <= 0.05 * rep.rows, (e, rep)
    for e in ("contacts", "orders", "order_items", "email_events", "web_events", "support_tickets"):
        assert second[e].files_read >= 1 and second[e].rows_read > 0, e
        assert con.execute(f"SELECT count(*) FROM staging.{e} WHERE _source_file LIKE '%2026-09-30%'").fetchall()[0][0] > 0, e
    # the correction replaced the order it re-delivers
    assert con.execute("SELECT status, count(*) OVER () FROM staging.orders WHERE order_id = 'O000000001'").fetchall() \
        == [("returned", 1)]
    # a full build of the same raw layer gives the same rows, row by row
    con.execute(f"DELETE FROM {staging.STATE}")
    for e in staging.STAGING_ENTITIES:
        assert staging.build(con, demo_sources, e).mode == "full"
        assert table_digest(con, f"staging.{e}", ()) == digests[e], e


def test_staging_without_new_files_reads_nothing_and_a_new_version_rebuilds(staged_twice, demo_sources, delivery_world):
    con, _, second, _ = staged_twice
    again = staging.build(con, demo_sources, "orders")
    assert (again.mode, again.files_read, again.rows_read, again.rows) == ("incremental", 0, 0, second["orders"].rows)
    # a corrected re-export of a delivered file replaces its rows: only a full build can drop the old ones
    path = delivery_world / "landing/shop/orders-2026-09-30.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    ingest_all(con, demo_sources, delivery_world)
    fixed = staging.build(con, demo_sources, "orders")
    assert fixed.mode == "full" and "newer version" in fixed.reason
    assert fixed.rows == second["orders"].rows - 1


def test_build_state_contract_fails_on_a_file_staged_twice(staged_twice):
    import pandera.errors

    from crm_platform.schemas import StagingBuildState

    con = staged_twice[0]
    state = con.execute(f"SELECT * FROM {staging.STATE}").df()
    assert len(StagingBuildState.validate(state)) == len(state) > 0
    with pytest.raises(pandera.errors.SchemaError):
        StagingBuildState.validate(pd.concat([state, state.head(1)], ignore_index=True))
    with pytest.raises(pandera.errors.SchemaError):
        StagingBuildState.validate(state.assign(query_hash=["0" * 16] + ["f" * 16] * (len(state) - 1)))
