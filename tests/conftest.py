"""Shared fixtures: a small generated world, ingested once per session, and the same world run
like production once per session."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one thread each for OpenMP and BLAS (scikit-learn's boosting and
    # the runs it starts), set before numpy loads; busy-waiting OpenMP threads of two workers on
    # the same cores made model training ten to thirty times slower
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from filelock import FileLock

from crm_platform.staging import tables as staging
from crm_platform.demo import GeneratorConfig, generate
from crm_platform.ingest.load import ingest_dataset
from crm_platform.core.settings import DEFAULT_SOURCES
from crm_platform.ingest.sources import load_sources

SMALL = GeneratorConfig(customers=1500, seed=7)
ROOT = Path(__file__).resolve().parents[1]


def made_once(tmp_path_factory, name: str, make) -> Path:
    """``make(home)`` once for the whole session, also under pytest-xdist (make test runs two
    workers): the first worker to need it makes it under a file lock in the directory the workers
    share, the others wait for it and use the same home; returns the home."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    home, done = root / name / "home", root / name / "made"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(root / name, ignore_errors=True)
            home.mkdir(parents=True)
            make(home)
            done.touch()
    return home


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


@pytest.fixture(scope="session")
def timeline_world(loaded_world, tmp_path_factory) -> Path:
    """The staged world resolved into customers, with the 360° timeline built; returns the
    warehouse path (copy it before writing)."""
    import shutil

    from crm_platform.customer360 import timeline
    from crm_platform.identity import resolve

    db = tmp_path_factory.mktemp("timeline") / "warehouse.duckdb"
    shutil.copy(loaded_world, db)
    con = duckdb.connect(str(db))
    spec = generator_spec()
    resolve.match(con, spec)
    resolve.resolve(con, spec)
    timeline.build(con)
    con.close()
    return db


def run_python(home: Path, code: str, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter with ``home`` as CRM_PLATFORM_HOME (its run history in
    ``home/dagster_home``), like the CLI does; fails the test with the output when it fails."""
    env = {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"), **(env or {})}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="session")
def production_run(world, tmp_path_factory) -> Path:
    """The generated world run like the schedules do (core refresh, models, the daily partitions
    of the last day and the one before, and one day an uplift window earlier), the run history in
    its own DAGSTER_HOME; returns the home. Copy it before changing anything."""
    def make(home):
        shutil.copytree(world / "landing", home / "landing")
        shutil.copytree(world / "truth", home / "truth")
        run_python(home, """
            from crm_platform.cli import materialize
            results = materialize(history_days=1)
            # at this size a model may miss its quality gate (the retraining run fails its check); the
            # refresh and the daily runs must succeed
            assert results[0].success and results[-1].success and len(results) == 4, [r.success for r in results]
            """)
    return made_once(tmp_path_factory, "production", make)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A world of 150 customers over six months run like production: too little for the models,
    the cohorts and most rates. Copy it before changing anything."""
    def make(home):
        generate(GeneratorConfig(customers=150, seed=3, months=6), home)
        run_python(home, """
            from crm_platform.cli import materialize
            results = materialize(history_days=1)
            assert results[0].success and results[-1].success, [r.success for r in results]
            """)
    return made_once(tmp_path_factory, "tiny", make)


def generator_spec():
    """The spec derived for the generator's world: every match column but a national id, shop
    accounts carried by the other systems and named by support tickets (what ``spec_for`` derives
    from the test world's staged contacts)."""
    from crm_platform.identity import derive

    cols = [c for c in derive.MATCH_COLUMNS if c != "national_id"]
    return derive.spec_from(derive.for_columns(cols, account_dataset="shop_customers", tickets_name_accounts=True))


def cli(home: Path, *args: str, sources: Path | None = None) -> subprocess.CompletedProcess:
    """``crm-platform`` as a user runs it, in a fresh process."""
    env = {**os.environ, "CRM_PLATFORM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home")}
    if sources:
        env["CRM_PLATFORM_SOURCES"] = str(sources)
    return subprocess.run([sys.executable, "-m", "crm_platform.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


PEOPLE_SOURCES = """
defaults: {country: DE}
systems:
  crm:
    trust_rank: 1
    datasets:
      people:
        entity: contacts
        path: crm/people*.csv
        columns: {source_record_id: id, first_name: first, last_name: last, email: email, phone: phone,
                  street: street, postcode: zip, city: city, country: country, birth_date: born}
      requesters:
        entity: contacts
        path: crm/requesters*.jsonl
        format: jsonl
        columns: {source_record_id: id, full_name: name}
      tickets:
        entity: support_tickets
        path: crm/tickets*.jsonl
        format: jsonl
        columns: {ticket_id: id, requester_ref: requester_id, opened_at: created_at,
                  satisfaction_score: satisfaction_rating.score}
"""


PEOPLE_HEADER = "id,first,last,email,phone,street,zip,city,country,born"


def load_people(tmp_path, files: dict[str, bytes]):
    """The files under landing/crm/, ingested and staged under PEOPLE_SOURCES."""
    import yaml

    from crm_platform.ingest.load import ingest_dataset
    from crm_platform.ingest.sources import parse_sources

    landing = tmp_path / "landing"
    for name, data in files.items():
        (landing / "crm").mkdir(parents=True, exist_ok=True)
        (landing / "crm" / name).write_bytes(data)
    cfg = parse_sources(yaml.safe_load(PEOPLE_SOURCES))
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    reports = {ds.key: ingest_dataset(con, ds, landing, tmp_path / "quarantine") for ds in cfg.datasets}
    for name in staging.STAGING_ENTITIES:
        staging.build(con, cfg, name)
    return con, reports


@pytest.fixture(scope="session")
def spark():
    """A Spark session in local mode on two cores (skipped, saying why, without Java or pyspark)."""
    from tests.servers import spark_missing

    reason = spark_missing()
    if reason:
        pytest.skip(reason)
    from crm_platform.core import spark as engine

    session = engine.session("local[2]", memory="2g", partitions=4)
    yield session
    session.stop()


def pytest_collection_modifyitems(config, items):
    """The Spark tests first: their module fixtures run the stages on a JVM for about two minutes,
    which at the end of the run would leave the other worker of ``make test`` idle; first, they
    land in one worker's share (one Spark session) while the other worker runs the rest."""
    items.sort(key=lambda item: item.get_closest_marker("spark") is None)
