"""Where the platform keeps its files.

One environment variable, ``CRM_PLATFORM_HOME`` (default ``./data``), holds every generated path.
``CRM_PLATFORM_SOURCES`` may point at a user's own source declaration; by default the packaged
``crm_platform/config/sources.yaml`` describes the demo systems.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).resolve().parents[1]   # crm_platform/, which holds config/
DEFAULT_SOURCES = PACKAGE_DIR / "config" / "sources.yaml"
DEFAULT_SURVIVORSHIP = PACKAGE_DIR / "config" / "survivorship.yaml"
DEFAULT_FEATURES = PACKAGE_DIR / "config" / "features.yaml"
DEFAULT_SEGMENTS = PACKAGE_DIR / "config" / "segments.yaml"
DEFAULT_MODELS = PACKAGE_DIR / "config" / "models.yaml"
DEFAULT_ALERTS = PACKAGE_DIR / "config" / "alerts.yaml"
SPARK_WAREHOUSE = "spark-warehouse"


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def truth(self) -> Path:
        return self.home / "truth"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def spark_warehouse(self) -> Path:
        """The Parquet tables of the heavy stages when they run on Spark (one folder per table)."""
        return self.home / SPARK_WAREHOUSE

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def suppression(self) -> Path:
        """CSV files of people nobody may contact (crm_platform/alerts/suppression.py)."""
        return self.home / "suppression"

    @property
    def requests(self) -> Path:
        """Erasure and export requests dropped as files (picked up by the requests sensor)."""
        return self.home / "requests"

    @property
    def salt_file(self) -> Path:
        return self.home / "secrets" / "hash_salt"

    def hash_salt(self) -> str:
        """The installation's secret salt for hashed identifiers, created on first use."""
        if not self.salt_file.exists():
            import secrets

            self.salt_file.parent.mkdir(parents=True, exist_ok=True)
            self.salt_file.write_text(secrets.token_hex(16))
            self.salt_file.chmod(0o600)
        return self.salt_file.read_text().strip()

    @property
    def first_day_file(self) -> Path:
        """The first day the timeline holds an event for: where the daily partitions start."""
        return self.home / "state" / "first_event_day"

    @property
    def last_day_file(self) -> Path:
        """The newest day the timeline holds an event for: where the daily partitions end."""
        return self.home / "state" / "last_event_day"

    @property
    def review(self) -> Path:
        """Review queue exports and the reviewers' decisions file."""
        return self.home / "review"


def home() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_HOME", "data")).resolve()


def paths() -> Paths:
    return Paths(home())


def sources_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_SOURCES", DEFAULT_SOURCES)).resolve()


def match_spec_file() -> Path | None:
    """The user's match spec (``CRM_PLATFORM_MATCH_SPEC``); None: the spec derived from the data."""
    path = os.environ.get("CRM_PLATFORM_MATCH_SPEC", "").strip()
    return Path(path).resolve() if path else None


def survivorship_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_SURVIVORSHIP", DEFAULT_SURVIVORSHIP)).resolve()


def features_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_FEATURES", DEFAULT_FEATURES)).resolve()


def segments_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_SEGMENTS", DEFAULT_SEGMENTS)).resolve()


def models_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_MODELS", DEFAULT_MODELS)).resolve()


def alerts_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_ALERTS", DEFAULT_ALERTS)).resolve()


# DuckDB keeps at most this much memory and spills the rest of a large sort, join or aggregate to
# a temporary directory beside the warehouse (its own default is 80 % of the machine's memory)
DUCKDB_MEMORY_CAP = 6 * 1024**3


def duckdb_config() -> dict[str, str]:
    """The settings every warehouse connection opens with: ``CRM_PLATFORM_DUCKDB_MEMORY`` (a
    DuckDB size such as ``4GB``) or 6 GiB, at most 80 % of the machine's memory. The same for the
    Dagster resource and the platform's own connections (the resource would add a user agent of its
    own otherwise): DuckDB shares one open database within a process only between connections of
    equal settings."""
    if "CRM_PLATFORM_DUCKDB_MEMORY" in os.environ:
        memory = os.environ["CRM_PLATFORM_DUCKDB_MEMORY"]
    else:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = f"{min(DUCKDB_MEMORY_CAP, int(physical * 0.8)) // 1024**2}MiB"
    return {"memory_limit": memory, "custom_user_agent": "crm_platform"}


def automation_on() -> bool:
    """``CRM_PLATFORM_AUTOMATION=on`` (or ``true``, ``1``): schedules and sensors run by default;
    otherwise they are off until switched on (sensors/defaults.py)."""
    value = os.environ.get("CRM_PLATFORM_AUTOMATION", "off").strip().lower()
    if value not in ("on", "off", "true", "false", "1", "0", "yes", "no", ""):
        raise ValueError(f"CRM_PLATFORM_AUTOMATION must be on or off, not {value!r}")
    return value in ("on", "true", "1", "yes")


ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine runs the heavy stages (staging, identity resolution, the timeline, the
    features) - docs/scale-out.md."""
    name: str = "duckdb"            # CRM_PLATFORM_ENGINE
    spark_master: str = "local[2]"  # CRM_PLATFORM_SPARK_MASTER: local[N], spark://host:port or sc://host:port
    spark_memory: str = "4g"        # CRM_PLATFORM_SPARK_MEMORY: the driver's memory (local mode: all of it)
    spark_partitions: int = 8       # CRM_PLATFORM_SPARK_PARTITIONS: shuffle partitions


def engine() -> EngineSettings:
    """``CRM_PLATFORM_ENGINE`` (``duckdb``, the embedded default, or ``spark``) and the Spark
    session's settings; another engine name is an error that lists the two."""
    name = os.environ.get("CRM_PLATFORM_ENGINE", "duckdb").strip().lower() or "duckdb"
    if name not in ENGINES:
        raise ValueError(f"CRM_PLATFORM_ENGINE must be one of {', '.join(ENGINES)}, not {name!r}")
    partitions = os.environ.get("CRM_PLATFORM_SPARK_PARTITIONS", "8").strip() or "8"
    if not partitions.isdigit() or int(partitions) < 1:
        raise ValueError(f"CRM_PLATFORM_SPARK_PARTITIONS must be a positive whole number, not {partitions!r}")
    return EngineSettings(name, os.environ.get("CRM_PLATFORM_SPARK_MASTER", "").strip() or "local[2]",
                          os.environ.get("CRM_PLATFORM_SPARK_MEMORY", "").strip() or "4g", int(partitions))


EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


def executor() -> str:
    """``CRM_PLATFORM_EXECUTOR``: how a run's steps are started (resources/executors.py), by default
    ``in_process``; another name is an error that lists the four."""
    name = os.environ.get("CRM_PLATFORM_EXECUTOR", "").strip().lower().replace("-", "_") or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"CRM_PLATFORM_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {name!r}")
    return name


LOCK_WAIT_SECONDS = 600.0


def lock_wait_seconds() -> float:
    """How long a connection waits for a warehouse another process holds (``CRM_PLATFORM_LOCK_WAIT``,
    seconds; default 600): a run's step waits out a CLI export or erasure, the CLI waits out a step."""
    return float(os.environ.get("CRM_PLATFORM_LOCK_WAIT", LOCK_WAIT_SECONDS))


def read_config(path: str | Path, build: Callable[[dict], T], error: type[Exception], section: str | None = None) -> T:
    """A YAML settings file (or one ``section`` of it) turned into a config object by ``build``;
    a missing key or a wrong type becomes ``error`` naming the file and the problem."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    where = f"{path}: {section}" if section else str(path)
    try:
        return build(raw[section] if section else raw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise error(f"{where}: {type(e).__name__}: {e}") from e


# The Dagster instance on PostgreSQL (dagster-postgres): the variables Dagster's own deployment
# guides use, each read by the instance from the environment at run time (never written to a file).
DAGSTER_PG = {"hostname": "DAGSTER_PG_HOST", "username": "DAGSTER_PG_USERNAME", "password": "DAGSTER_PG_PASSWORD",
              "db_name": "DAGSTER_PG_DB", "port": "DAGSTER_PG_PORT"}
DAGSTER_PG_REQUIRED = ("hostname", "username", "db_name")


def dagster_postgres() -> dict[str, str] | None:
    """The ``postgres_db`` fields of the Dagster instance with the variables that hold them, when
    ``DAGSTER_PG_HOST`` is set; None otherwise (the instance stays on SQLite under DAGSTER_HOME).
    A host without a user or a database name is an error that names what is missing."""
    if not os.environ.get(DAGSTER_PG["hostname"], "").strip():
        return None
    missing = [DAGSTER_PG[k] for k in DAGSTER_PG_REQUIRED if not os.environ.get(DAGSTER_PG[k], "").strip()]
    if missing:
        raise ValueError(f"DAGSTER_PG_HOST is set, so the Dagster instance goes on PostgreSQL, but "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: set "
                         f"DAGSTER_PG_HOST, DAGSTER_PG_USERNAME and DAGSTER_PG_DB (DAGSTER_PG_PASSWORD and "
                         f"DAGSTER_PG_PORT when needed), or unset DAGSTER_PG_HOST for the SQLite instance")
    return {k: v for k, v in DAGSTER_PG.items() if os.environ.get(v, "").strip()}
