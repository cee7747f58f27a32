"""Where the platform keeps its files.

One environment variable, ``CRM_PLATFORM_HOME`` (default ``./data``), holds every generated path.
``CRM_PLATFORM_SOURCES`` may point at a user's own source declaration; by default the packaged
``crm_platform/config/sources.yaml`` describes the demo systems.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_SOURCES = PACKAGE_DIR / "config" / "sources.yaml"


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
    def models(self) -> Path:
        return self.home / "models"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def reports(self) -> Path:
        return self.home / "reports"


def home() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_HOME", "data")).resolve()


def paths() -> Paths:
    return Paths(home())


def sources_file() -> Path:
    return Path(os.environ.get("CRM_PLATFORM_SOURCES", DEFAULT_SOURCES)).resolve()
