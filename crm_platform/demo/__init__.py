"""Demo data: landing files of seven source systems, as a company would export them, plus truth.

``generate(GeneratorConfig(customers=N, seed=S), out_dir)`` writes

* ``landing/`` - shop (customers, orders, order items; CSV), newsletter (subscribers as a German
  semicolon CSV in Windows-1252, e-mail events CSV), support desk (requesters and tickets, JSON
  lines), sales CRM (leads CSV), web analytics (Parquet parts), NPS survey (CSV) and marketing spend
  (CSV);
* ``truth/`` - what the pipeline never reads: the true person behind every source record, the
  persons with household, twin and churn facts, and the data errors that were injected;
* with ``delivery_days=N``: ``deliveries/<end date>/`` - what the systems created in the last N
  days (contact records by their creation time, orders, items, events, tickets, responses and
  spend by their own time), as a daily export would bring it: the same folders, formats and
  encodings as ``landing/``, file names ending in the date (``shop/orders-2026-09-30.csv``).
  ``landing/`` then holds the history before those days. Copying the delivery into ``landing/``
  is the day's new data arriving. Records are routed by the time they were created: a record of
  the history that changed during the delivery days is not delivered again.

Persons are generated in chunks with one random stream per chunk, so output is deterministic by
seed and memory stays bounded however many customers are asked for.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from crm_platform.demo import names as N
from crm_platform.demo.behaviour import (CHANNEL_NAMES, month_bounds)
from crm_platform.demo.people import GeneratorConfig

from crm_platform.demo.systems import Chunk
from crm_platform.demo.writers import Dirt, Writers


@dataclass
class GenerationSummary:
    customers: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def generate(cfg: GeneratorConfig, out: Path) -> GenerationSummary:
    t0 = datetime.now()
    out = Path(out)
    landing, truth, deliveries = out / "landing", out / "truth", out / "deliveries"
    for d in (landing, truth, deliveries):
        if d.exists():
            shutil.rmtree(d)
    bounds = month_bounds(cfg.end_date, cfg.months)
    cutoff = None
    if cfg.delivery_days:
        first = date.fromordinal(cfg.end_date.toordinal() - cfg.delivery_days + 1)
        cutoff = int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp())
    w = Writers(landing, truth, delivery_dir(out, cfg.end_date), cutoff, cfg.locale.timezone)
    counters: dict[str, int] = {}
    spend = np.zeros((cfg.months * 31 + 31, len(CHANNEL_NAMES)))
    errors: list = []
    n_chunks = (cfg.customers + cfg.chunk_size - 1) // cfg.chunk_size
    for chunk in range(n_chunks):
        rng = np.random.default_rng([cfg.seed, chunk])
        start = chunk * cfg.chunk_size
        n = min(cfg.chunk_size, cfg.customers - start)
        Chunk(rng, cfg, start, n, bounds, w, counters, spend, Dirt(rng, cfg.dirty_rate, errors), chunk).write()
    rng = np.random.default_rng([cfg.seed, 10**6])
    w.spend(_spend_table(rng, spend, bounds, cfg), Dirt(rng, cfg.dirty_rate, errors))
    w.errors(errors)
    summary = GenerationSummary(cfg.customers, w.close())
    summary.seconds = (datetime.now() - t0).total_seconds()
    return summary


def delivery_dir(out: Path, day: date) -> Path:
    """Where ``generate`` puts the files of the delivery ending on ``day``."""
    return Path(out) / "deliveries" / day.isoformat()


def deliver(out: Path, day: date) -> list[Path]:
    """Copy the delivery of ``day`` into ``landing/`` (the day's exports arrive); returns the
    landing paths written."""
    src, landing = delivery_dir(out, day), Path(out) / "landing"
    if not src.is_dir():
        raise FileNotFoundError(f"no delivery for {day.isoformat()} under {src.parent}")
    written = []
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        target = landing / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
        written.append(target)
    return written


def _spend_table(rng, acquired_per_day, bounds, cfg) -> pa.Table:
    days = int((bounds[-1] - bounds[0]) // 86400)
    dates, channels, campaigns, amounts = [], [], [], []
    start = date.fromtimestamp(int(bounds[0]))
    for ci, ch in enumerate(CHANNEL_NAMES):
        cac = N.CHANNELS[ch][1]
        if cac == 0:
            continue
        for d in range(days):
            acquired = acquired_per_day[d, ci]
            amount = acquired * cac * float(rng.lognormal(0, 0.25)) + float(rng.uniform(5, 40))
            dates.append(date.fromordinal(start.toordinal() + d).isoformat())
            channels.append(ch)
            campaigns.append(f"{ch}-{date.fromordinal(start.toordinal() + d).strftime('%Y-%m')}")
            amounts.append(f"{amount:.2f}")
    return pa.table({"date": dates, "channel": channels, "campaign": campaigns, "amount_eur": amounts,
                     "currency": ["EUR"] * len(dates)})
