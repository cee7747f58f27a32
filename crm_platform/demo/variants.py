"""Worlds of other companies: the demo world cut down to what a real company may have.

A variant names the systems a company runs (any subset of the seven), the contact fields its
exports leave out (no e-mail, no phone, no birth date), how many months of history it keeps, the
country its customers live in, and whether its shop exports a plain order log (customer number,
day, amount) and nothing else. ``make`` writes the landing files such a company would export and
the sources mapping a user would write for them - the mapping is all the platform is given.

    from crm_platform.demo.variants import Variant, make
    sources = make(Variant("us_shop", systems=("shop",), country="US"), home, customers=500, seed=1)
    # CRM_PLATFORM_HOME=home CRM_PLATFORM_SOURCES=sources crm-platform materialize
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from crm_platform.demo import generate
from crm_platform.demo.people import GeneratorConfig
from crm_platform.core.settings import DEFAULT_SOURCES

SYSTEMS = ("shop", "newsletter", "support", "sales", "web", "nps", "marketing")
# the mapping of a plain order log: what a shop's order export holds at the least
ORDER_LOG_COLUMNS = ("order_id", "customer_ref", "ordered_at", "total_amount")


@dataclass(frozen=True)
class Variant:
    name: str
    systems: tuple[str, ...] = SYSTEMS
    drop: tuple[str, ...] = ()            # canonical contact fields no export holds
    months: int = 36
    country: str = "DE"
    order_log: bool = False               # the shop's orders alone, as a plain log
    datasets: tuple[str, ...] = ()        # only these datasets (system_dataset keys), e.g. a customer file alone

    def __post_init__(self):
        unknown = set(self.systems) - set(SYSTEMS)
        if unknown or not self.systems:
            raise ValueError(f"variant {self.name}: systems must be some of {', '.join(SYSTEMS)}, not {sorted(unknown)}")
        if self.order_log and self.systems != ("shop",):
            raise ValueError(f"variant {self.name}: an order log is the shop alone")


def make(variant: Variant, home: Path, customers: int, seed: int) -> Path:
    """Generate the variant's world under ``home`` (landing/ and truth/) and write the mapping a
    user would declare for it as ``home/sources.yaml``; returns its path."""
    home = Path(home)
    generate(GeneratorConfig(customers=customers, seed=seed, months=variant.months, country=variant.country), home)
    doc = yaml.safe_load(DEFAULT_SOURCES.read_text(encoding="utf-8"))
    landing = home / "landing"
    for system in set(SYSTEMS) - set(variant.systems):
        for ds in doc["systems"].pop(system)["datasets"].values():
            shutil.rmtree(landing / ds["path"].split("/")[0], ignore_errors=True)
    for sdef in doc["systems"].values():
        for ds in sdef["datasets"].values():
            if ds.get("contact_system") not in (None, *variant.systems):
                del ds["contact_system"]          # its ids are the events' own system's contacts now
    if variant.datasets:
        for system, sdef in doc["systems"].items():
            for name in [n for n in sdef["datasets"] if f"{system}_{n}" not in variant.datasets]:
                path = sdef["datasets"].pop(name)["path"]
                if not any(d["path"] == path for d in sdef["datasets"].values()):
                    for f in landing.glob(path):
                        f.unlink()
    if variant.order_log:
        shop = doc["systems"]["shop"]
        for name in [n for n in shop["datasets"] if n != "orders"]:
            for path in landing.glob(shop["datasets"].pop(name)["path"]):
                path.unlink()
        orders = shop["datasets"]["orders"]
        orders["columns"] = {k: v for k, v in orders["columns"].items() if k in ORDER_LOG_COLUMNS}
        orders.pop("constants", None)
        _keep_columns(landing, orders, doc, shop)
    if variant.drop:
        for sdef in doc["systems"].values():
            for ds in sdef["datasets"].values():
                if ds["entity"] == "contacts":
                    for field in variant.drop:
                        ds["columns"].pop(field, None)
        for sdef in doc["systems"].values():
            for ds in sdef["datasets"].values():
                _keep_columns(landing, ds, doc, sdef)
    locale = GeneratorConfig(country=variant.country).locale
    doc.setdefault("defaults", {}).update(country=variant.country, timezone=locale.timezone)
    out = home / "sources.yaml"
    out.write_text(f"# {variant.name}: the mapping a user writes for this company's exports\n"
                   + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def _keep_columns(landing: Path, ds: dict, doc: dict, sdef: dict) -> None:
    """Rewrite the dataset's files with only the columns some declared dataset of the same files
    maps (an export without the left-out fields)."""
    if ds.get("format", "csv") not in ("csv", "jsonl"):
        return
    wanted = set()
    for other in (d for s in doc["systems"].values() for d in s["datasets"].values() if d["path"] == ds["path"]):
        wanted |= {str(v).split(".")[0] for v in other["columns"].values()}
    opts = {**(doc.get("defaults", {}).get("options") or {}), **(sdef.get("options") or {}), **(ds.get("options") or {})}
    for path in landing.glob(ds["path"]):
        if ds.get("format", "csv") == "jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            path.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k in wanted},
                                               ensure_ascii=False) + "\n" for line in lines if line.strip()),
                            encoding="utf-8")
            continue
        enc, delim = opts.get("encoding", "utf-8"), opts.get("delimiter", ",")
        with path.open(encoding=enc, newline="") as fh:
            rows = list(csv.reader(fh, delimiter=delim))
        keep = [i for i, h in enumerate(rows[0]) if h in wanted]
        with path.open("w", encoding=enc, newline="") as fh:
            w = csv.writer(fh, delimiter=delim)
            w.writerows([[r[i] for i in keep if i < len(r)] for r in rows])
