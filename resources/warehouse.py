"""Resources chosen in one place: the embedded DuckDB warehouse and the landing zone.

Both follow ``CRM_PLATFORM_HOME`` (default ``./data``); the source declaration follows
``CRM_PLATFORM_SOURCES`` (default: the packaged demo systems).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from crm_platform.core import engines, settings, warehouse as wh
from crm_platform.ingest.sources import SourceConfig, load_sources
from resources.alerts import alerting_resource
from resources.identity import identity_resource
from resources.models import model_store


class LandingZone(dg.ConfigurableResource):
    """Where source systems drop their exports, where unreadable files go, and how to read them."""

    home: str
    sources_path: str

    @property
    def landing(self) -> Path:
        return settings.Paths(Path(self.home)).landing

    @property
    def quarantine(self) -> Path:
        return settings.Paths(Path(self.home)).quarantine

    def sources(self) -> SourceConfig:
        return load_sources(self.sources_path)

    def erased(self) -> tuple[list[str], str] | None:
        """The erasure list's hashes and salt (crm_platform.governance.erasure), None if empty."""
        from crm_platform.governance.erasure import load_list

        loaded = load_list(settings.Paths(Path(self.home)))
        return (loaded[0]["identifier_hash"].tolist(), loaded[1]) if loaded else None


class Warehouse(DuckDBResource):
    """dagster-duckdb's resource, opening its connections through crm_platform.core.warehouse.connect:
    the platform's settings and its one lock policy (a file another process holds is waited for,
    up to the lock wait, then an error naming the holder)."""

    @contextmanager
    def get_connection(self):
        con = wh.connect(self.database, config=self.connection_config or None)
        try:
            yield con
        finally:
            con.close()


def warehouse_resource() -> DuckDBResource:
    return Warehouse(database=str(settings.paths().warehouse), connection_config=settings.duckdb_config())


@contextmanager
def heavy(warehouse: DuckDBResource, con, reads=()):
    """The connection a heavy stage runs on: ``con`` (the warehouse's DuckDB connection) itself,
    or the Spark warehouse with ``CRM_PLATFORM_ENGINE=spark`` (crm_platform.core.engines)."""
    with engines.heavy(con, warehouse.database, reads) as engine:
        yield engine


@contextmanager
def read_only(warehouse: DuckDBResource):
    """A read-only connection for checks and readers (DuckDB allows one writer)."""
    con = wh.reader(warehouse.database)
    try:
        yield con
    finally:
        con.close()


def build_resources() -> dict:
    return {
        "alerting": alerting_resource(),
        "identity": identity_resource(),
        "models": model_store(),
        "warehouse": warehouse_resource(),
        "landing": LandingZone(home=str(settings.home()), sources_path=str(settings.sources_file())),
    }
