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

from crm_platform.contracts.entities import entity
from crm_platform.core.standardize import country_std

FORMATS = {"csv", "jsonl", "parquet"}
DEFAULT_TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                             "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
DEFAULT_DATE_FORMATS = ("%Y-%m-%d",)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SourceConfigError(ValueError):
    """The source declaration is not usable; the message says where and why."""


_TEMPLATE_PART = re.compile(r"\{([^{}]+)\}")
NAME_PARTS = ("first", "last")


@dataclass(frozen=True)
class Derivation:
    """A canonical column made from the system's columns: a ``template`` over several
    (``"{Strasse} {Hausnr}"``), a value ``map`` of one (``{A: completed, S: cancelled}``; other
    values pass as delivered, for the entity's rules to judge), or one ``part`` (first, last) of a
    full name in one column."""
    kind: str                                  # template | map | part
    sources: tuple[str, ...]
    template: str = ""
    mapping: tuple[tuple[str, str], ...] = ()
    part: str = ""


def parse_derivation(where: str, canon: str, value) -> Derivation | None:
    """A mapping value as a derivation; None for a plain column name."""
    if isinstance(value, str):
        names = _TEMPLATE_PART.findall(value)
        if "{}" in value or any(not n.strip() for n in names):
            raise _fail(where, f"column {canon!r}: an empty {{}} in template {value!r} names no column")
        if "{" in _TEMPLATE_PART.sub("", value) or "}" in _TEMPLATE_PART.sub("", value):
            raise _fail(where, f"column {canon!r}: unbalanced braces in template {value!r}")
        if not names:
            return None
        return Derivation("template", tuple(dict.fromkeys(n.strip() for n in names)), template=value)
    if not isinstance(value, dict) or not isinstance(value.get("column"), str) or not value["column"]:
        raise _fail(where, f"column {canon!r}: expected a column name, a template such as \"{{street}} {{no}}\", "
                           "or {column: ..., map: {...}} / {column: ..., part: first|last}")
    extra = set(value) - {"column", "map", "part"}
    if extra or ("map" in value) == ("part" in value):
        raise _fail(where, f"column {canon!r}: give either map or part with column (not {sorted(set(value) - {'column'})})")
    if "map" in value:
        if not isinstance(value["map"], dict) or not value["map"]:
            raise _fail(where, f"column {canon!r}: map must be a mapping of delivered values to canonical ones")
        return Derivation("map", (value["column"],), mapping=tuple((str(k), str(v)) for k, v in value["map"].items()))
    if value["part"] not in NAME_PARTS:
        raise _fail(where, f"column {canon!r}: part must be one of {', '.join(NAME_PARTS)}, not {value['part']!r}")
    return Derivation("part", (value["column"],), part=value["part"])


@dataclass(frozen=True)
class Dataset:
    system: str
    name: str
    entity: str
    path: str
    format: str
    columns: dict[str, str]
    constants: dict[str, str] = field(default_factory=dict)
    derived: dict[str, Derivation] = field(default_factory=dict)
    delimiter: str = ","            # one character, or "whitespace": columns aligned by runs of blanks
    quote: str = '"'
    header: tuple[str, ...] = ()    # the column names of a file without a header line
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
        return sorted(set(_columns_read(self.columns, self.derived)))

    @property
    def required_source_columns(self) -> list[str]:
        """Source columns mapped to required canonical columns: a file without them is unreadable."""
        ent = entity(self.entity)
        return sorted({src for canon, src in self.columns.items() if ent.column(canon).required}
                      | {c for canon, d in self.derived.items() if ent.column(canon).required for c in d.sources
                         if c not in LINE_FIELDS})


@dataclass(frozen=True)
class SourceConfig:
    datasets: tuple[Dataset, ...]
    trust_ranks: dict[str, int]
    path: Path | None = None

    def by_entity(self, entity_name: str) -> list[Dataset]:
        return [d for d in self.datasets if d.entity == entity_name]

    def implying_contacts(self) -> list[Dataset]:
        """Event datasets whose contact system declares no contact dataset: the ids they carry
        (a shop's customer number in a plain order log) are that system's contact records."""
        with_contacts = {d.system for d in self.by_entity("contacts")}
        return [d for d in self.datasets if d.entity != "contacts" and entity(d.entity).contact_ref
                and d.contact_system not in with_contacts]

    def declares(self, entity_name: str) -> bool:
        """Whether any source delivers ``entity_name`` (contacts also through the ids of
        ``implying_contacts``); an entity nobody declares is absent, not a failure."""
        return bool(self.by_entity(entity_name) or (entity_name == "contacts" and self.implying_contacts()))

    def dataset(self, key: str) -> Dataset:
        for d in self.datasets:
            if d.key == key:
                return d
        raise KeyError(f"no dataset {key!r} declared")


WHITESPACE = "whitespace"
# what a template may name besides the file's columns: the file (its path under landing/) and the
# line a record stands on - the key of a log whose lines have no number of their own
LINE_FIELDS = ("_file", "_line")


def _columns_read(columns: dict, derived: dict) -> list[str]:
    return [v for v in columns.values()] + [c for d in derived.values() for c in d.sources if c not in LINE_FIELDS]


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
    if not isinstance(columns, dict):
        raise _fail(where, "columns must be a mapping of canonical names to the system's columns")
    constants = {k: str(v) for k, v in (ddef.get("constants") or {}).items()}
    known = set(ent.column_names)
    for canon in list(columns) + list(constants):
        if canon not in known:
            raise _fail(where, f"{canon!r} is not a column of entity {ent.name} "
                               f"(known: {', '.join(ent.column_names)})")
    for col in ent.columns:
        if col.required and col.name not in columns and col.name not in constants:
            raise _fail(where, f"required column {col.name!r} of {ent.name} is not mapped")
    derived = {canon: d for canon, v in columns.items() if (d := parse_derivation(where, canon, v)) is not None}
    if ent.key and any(k in derived and derived[k].kind == "part" for k in ent.key):
        raise _fail(where, "a key column cannot be a part of a name")
    columns = {k: v for k, v in columns.items() if k not in derived}
    opts = {**(defaults.get("options") or {}), **(sdef.get("options") or {}),
            **(ddef.get("options") or {})}

    def pick(key, default):
        return ddef.get(key, sdef.get(key, defaults.get(key, default)))

    delimiter = str(opts.get("delimiter", ","))
    if len(delimiter) != 1 and delimiter != WHITESPACE:
        raise _fail(where, f"delimiter must be one character, or {WHITESPACE!r} for columns aligned by blanks")
    header = ddef.get("header") or ()
    if header and (not isinstance(header, list) or not all(isinstance(h, str) and h for h in header)
                   or len(set(header)) != len(header)):
        raise _fail(where, "header must be a list of distinct column names (for a file without a header line)")
    if header and fmt != "csv":
        raise _fail(where, "header is for CSV files without a header line")
    missing = [c for c in _columns_read(columns, derived) if header and c not in header]
    if missing:
        raise _fail(where, f"mapped columns {missing} are not in the declared header {header}")
    country = str(pick("country", "DE")).strip().upper()
    if country_std(country, "") != country:
        raise _fail(where, f"country {country!r} is not an ISO 3166 country code (DE, AT, CH, GB, US, FR, NL, AU, ...)")
    return Dataset(
        system=system, name=name, entity=ent.name, path=str(ddef["path"]), format=fmt,
        columns={k: str(v) for k, v in columns.items()}, constants=constants, derived=derived,
        delimiter=delimiter, quote=str(opts.get("quote", '"')), header=tuple(header),
        encoding=str(opts.get("encoding", "utf-8")).lower(),
        timestamp_formats=tuple(pick("timestamp_formats", ())) + DEFAULT_TIMESTAMP_FORMATS,
        date_formats=tuple(pick("date_formats", ())) + DEFAULT_DATE_FORMATS,
        decimal_comma=bool(pick("decimal_comma", False)),
        timezone=str(pick("timezone", "Europe/Berlin")),
        default_country=country,
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
