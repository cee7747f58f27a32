"""Shared fixtures: a small generated world, ingested once per session."""

from pathlib import Path

import duckdb
import pytest

from crm_platform import staging
from crm_platform.generator import GeneratorConfig, generate
from crm_platform.ingest import ingest_dataset
from crm_platform.settings import DEFAULT_SOURCES
from crm_platform.sources import load_sources

SMALL = GeneratorConfig(customers=1500, seed=7)


@pytest.fixture(scope="session")
def demo_sources():
    return load_sources(DEFAULT_SOURCES)


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """Landing files and truth of 1,500 generated customers."""
    home = tmp_path_factory.mktemp("world")
    generate(SMALL, home)
    return home


@pytest.fixture(scope="session")
def loaded_world(world, demo_sources, tmp_path_factory) -> Path:
    """The generated world ingested and staged into a warehouse; returns the warehouse path."""
    db = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    for ds in demo_sources.datasets:
        ingest_dataset(con, ds, world / "landing", world / "quarantine")
    for e in staging.STAGING_ENTITIES:
        staging.build(con, demo_sources, e)
    con.close()
    return db


def ingest_all(con, cfg, home: Path):
    return {ds.key: ingest_dataset(con, ds, home / "landing", home / "quarantine")
            for ds in cfg.datasets}
