"""The Dagster instance the platform writes into DAGSTER_HOME: SQLite by default, PostgreSQL when
DAGSTER_PG_HOST says so, a user's own dagster.yaml left as it is."""

import pytest

from crm_platform.cli import prepare_dagster_home
from crm_platform.cli.runs import instance_yaml


def test_without_dagster_pg_host_the_instance_stays_on_sqlite_under_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_HOST", raising=False)
    text = instance_yaml(tmp_path)
    assert "SerializedSqliteEventLogStorage" in text and "postgres" not in text
    assert f"{tmp_path.resolve().as_posix()}/history/runs" in text


def test_postgres_fields_are_references_to_the_variables_that_are_set(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_HOST", "db.internal")
    monkeypatch.setenv("DAGSTER_PG_USERNAME", "dagster")
    monkeypatch.setenv("DAGSTER_PG_DB", "runs")
    monkeypatch.delenv("DAGSTER_PG_PASSWORD", raising=False)
    monkeypatch.setenv("DAGSTER_PG_PORT", "6543")
    text = instance_yaml(tmp_path)
    assert "hostname: {env: DAGSTER_PG_HOST}" in text and "port: {env: DAGSTER_PG_PORT}" in text
    assert "password" not in text                    # unset: Dagster's default (none), not an empty variable
    assert "db.internal" not in text and "6543" not in text
    assert "SerializedSqliteEventLogStorage" not in text and "default_limit: 1" in text


def test_a_host_without_user_or_database_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_HOST", "db.internal")
    monkeypatch.delenv("DAGSTER_PG_USERNAME", raising=False)
    monkeypatch.delenv("DAGSTER_PG_DB", raising=False)
    with pytest.raises(ValueError, match="DAGSTER_PG_USERNAME and DAGSTER_PG_DB are not"):
        instance_yaml(tmp_path)


def test_a_dagster_yaml_of_the_users_own_is_kept_and_the_pool_still_made(tmp_path, monkeypatch):
    import dagster as dg

    monkeypatch.delenv("DAGSTER_PG_HOST", raising=False)
    own = "telemetry:\n  enabled: false\n"
    (tmp_path / "dagster.yaml").write_text(own)
    prepare_dagster_home(tmp_path)
    assert (tmp_path / "dagster.yaml").read_text() == own
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.event_log_storage.get_concurrency_info("duckdb").slot_count == 1
