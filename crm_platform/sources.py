"""Declarative source systems: which files each system exports and how they map to the model.

A ``sources.yaml`` lists systems, each with a trust rank (1 = most trusted, used by survivorship)
and datasets. A dataset names its canonical entity, a path glob under the landing folder, a format
(csv, jsonl, parquet), parse options and the mapping of canonical columns to the system's own column
names. Pointing the platform at another company's exports means editing this file, not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from crm_platform.model import entity

FORMATS = {"csv", "jsonl", "parquet"}
DEFAULT_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                             "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
DEFAULT_DATE_FORMATS = ("%Y-%m-%d",)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SourceConfigError(ValueError):
    """The source declaration is not usable; the message says where and why."""


@dataclass(frozen=True)
class Dataset:
    system: str
    name: str
    entity: str
    path: str
    format: str
    columns: dict[str, str]
    constants: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    timestamp_formats: tuple[str, ...] = DEFAULT_TIMESTAMP_FORMATS
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    decimal_comma: bool = False
    timezone: str = "Europe/Berlin"
    default_country: str = "DE"
    contact_system: str = ""
    trust_rank: int = 99
    description: str = ""

    @property
    def key(self) -> str:
        """Name of the raw table and asset: ``<system>_<dataset>``."""
        return f"{self.system}_{self.name}"

    @property
    def source_columns(self) -> list[str]:
        """The system's own column names this dataset needs from each file."""
        return sorted(set(self.columns.values()))

    @property
    def required_source_columns(self) -> list[str]:
        """Source columns mapped to required canonical columns: a file without them is unreadable."""
        ent = entity(self.entity)
        return sorted({src for canon, src in self.columns.items() if ent.column(canon).required})


@dataclass(frozen=True)
class SourceConfig:
    datasets: tuple[Dataset, ...]
    trust_ranks: dict[str, int]
    path: Path | None = None

    def by_entity(self, entity_name: str) -> list[Dataset]:
        return [d for d in self.datasets if d.entity == entity_name]

    def dataset(self, key: str) -> Dataset:
        for d in self.datasets:
            if d.key == key:
                return d
        raise KeyError(f"no dataset {key!r} declared")


def _fail(where: str, msg: str) -> SourceConfigError:
    return SourceConfigError(f"{where}: {msg}")


def parse_sources(doc: dict, path: Path | None = None) -> SourceConfig:
    """Validate a parsed sources document and return the dataset declarations."""
    if not isinstance(doc, dict) or not isinstance(doc.get("systems"), dict):
        raise _fail(str(path or "sources"), "expected a mapping with a 'systems' section")
    defaults = doc.get("defaults") or {}
    datasets: list[Dataset] = []
    ranks: dict[str, int] = {}
    for system, sdef in doc["systems"].items():
        where = f"systems.{system}"
        if not _NAME.match(str(system)):
            raise _fail(where, "system names are lowercase letters, digits and underscores")
        if not isinstance(sdef, dict) or not isinstance(sdef.get("datasets"), dict):
            raise _fail(where, "needs a 'datasets' mapping")
        rank = sdef.get("trust_rank", 99)
        if not isinstance(rank, int) or rank < 1:
            raise _fail(where, "trust_rank must be a whole number >= 1 (1 = most trusted)")
        ranks[system] = rank
        for name, ddef in sdef["datasets"].items():
            dwhere = f"{where}.datasets.{name}"
            if not _NAME.match(str(name)):
                raise _fail(dwhere, "dataset names are lowercase letters, digits and underscores")
            datasets.append(_parse_dataset(system, name, ddef, defaults, sdef, rank, dwhere))
    keys = [d.key for d in datasets]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise _fail(str(path or "sources"), f"dataset keys declared twice: {sorted(dupes)}")
    for d in datasets:
        if d.contact_system not in ranks:
            raise _fail(f"systems.{d.system}.datasets.{d.name}",
                        f"contact_system {d.contact_system!r} is not a declared system")
    return SourceConfig(tuple(datasets), ranks, path)


def _parse_dataset(system, name, ddef, defaults, sdef, rank, where) -> Dataset:
    if not isinstance(ddef, dict):
        raise _fail(where, "expected a mapping")
    try:
        ent = entity(ddef.get("entity", ""))
    except KeyError as e:
        raise _fail(where, str(e.args[0])) from None
    fmt = ddef.get("format", "csv")
    if fmt not in FORMATS:
        raise _fail(where, f"format {fmt!r} is not one of {sorted(FORMATS)}")
    if not ddef.get("path"):
        raise _fail(where, "needs a 'path' glob relative to the landing folder")
    columns = ddef.get("columns") or {}
    constants = {k: str(v) for k, v in (ddef.get("constants") or {}).items()}
    known = set(ent.column_names)
    for canon in list(columns) + list(constants):
        if canon not in known:
            raise _fail(where, f"{canon!r} is not a column of entity {ent.name} "
                               f"(known: {', '.join(ent.column_names)})")
    for col in ent.columns:
        if col.required and col.name not in columns and col.name not in constants:
            raise _fail(where, f"required column {col.name!r} of {ent.name} is not mapped")
    opts = {**(defaults.get("options") or {}), **(sdef.get("options") or {}),
            **(ddef.get("options") or {})}

    def pick(key, default):
        return ddef.get(key, sdef.get(key, defaults.get(key, default)))

    delimiter = str(opts.get("delimiter", ","))
    if len(delimiter) != 1:
        raise _fail(where, "delimiter must be one character")
    return Dataset(
        system=system, name=name, entity=ent.name, path=str(ddef["path"]), format=fmt,
        columns={k: str(v) for k, v in columns.items()}, constants=constants,
        delimiter=delimiter, quote=str(opts.get("quote", '"')),
        encoding=str(opts.get("encoding", "utf-8")).lower(),
        timestamp_formats=tuple(pick("timestamp_formats", ())) + DEFAULT_TIMESTAMP_FORMATS,
        date_formats=tuple(pick("date_formats", ())) + DEFAULT_DATE_FORMATS,
        decimal_comma=bool(pick("decimal_comma", False)),
        timezone=str(pick("timezone", "Europe/Berlin")),
        default_country=str(pick("country", "DE")),
        contact_system=str(ddef.get("contact_system", system)),
        trust_rank=rank, description=str(ddef.get("description", sdef.get("description", ""))),
    )


def load_sources(path: Path | str) -> SourceConfig:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceConfigError(f"source declaration {path} does not exist") from None
    except yaml.YAMLError as e:
        raise SourceConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_sources(doc, path)
