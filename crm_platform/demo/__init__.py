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

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from crm_platform.demo import names as N
from crm_platform.demo.behaviour import (CHANNEL_NAMES, EMAIL_TYPES, NO_SOURCE, VISIT_SOURCES, WEB_TYPES,
                                         Behaviour, month_bounds, simulate)
from crm_platform.demo.people import GeneratorConfig, Person, make_persons, vary

__all__ = ["GeneratorConfig", "generate", "GenerationSummary"]

BERLIN = "Europe/Berlin"
ORDER_STATUS = np.array(["completed", "cancelled", "returned", "partially_returned"])
ORDER_CHANNEL = np.array(["web", "app", "store"])
PRIORITY = np.array(["low", "normal", "high", "urgent"])
CATS = np.array(N.CATEGORIES)


@dataclass
class GenerationSummary:
    customers: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Csv:
    """Appends pyarrow tables to one CSV file, header once."""

    def __init__(self, path: Path, delimiter: str = ",", encoding: str = "utf-8"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.delimiter, self.encoding = path, delimiter, encoding
        self.fh = path.open("wb")
        self.header = True
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        buf = io.BytesIO()
        pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=self.header,
                                                     delimiter=self.delimiter, quoting_style="needed"))
        data = buf.getvalue()
        if self.encoding != "utf-8":
            data = data.decode("utf-8").encode(self.encoding, errors="replace")
        self.fh.write(data)
        self.header = False
        self.rows += table.num_rows

    def close(self) -> None:
        self.fh.close()


def _fmt(ts: np.ndarray, fmt: str, tz: str | None = BERLIN) -> pa.Array:
    """Epoch seconds (-1 = none) as text in a system's own format and time zone."""
    arr = pa.array(np.where(ts < 0, 0, ts), pa.timestamp("s", tz=tz or "UTC"))
    text = pc.strftime(arr, format=fmt)
    return pc.if_else(pa.array(ts < 0), pa.nulls(len(ts), pa.string()), text)


def _ids(prefix: str, start: int, n: int, width: int = 8) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.arange(start, start + n).astype(str), width))


class _Dirt:
    """Injects data errors into a small share of rows and remembers them in truth."""

    def __init__(self, rng, rate: float, log: list):
        self.rng, self.rate, self.log = rng, rate, log

    def rows(self, n: int) -> np.ndarray:
        return np.flatnonzero(self.rng.random(n) < self.rate) if n else np.array([], int)

    def apply(self, dataset: str, table: pa.Table, key: str, options: list[tuple[str, str, str]]):
        """Replace values in picked rows; options are (column, kind, bad value)."""
        picked = self.rows(table.num_rows)
        if not len(picked):
            return table
        cols = {name: table.column(name).to_pylist() for name in {c for c, _, _ in options}}
        keys = table.column(key).to_pylist()
        for i in picked:
            col, kind, bad = options[int(self.rng.integers(0, len(options)))]
            cols[col][i] = bad
            self.log.append((dataset, keys[i], col, kind))
        for name, values in cols.items():
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pa.array([None if v is None else str(v) for v in values], pa.string()))
        return table


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
    w = _Writers(landing, truth, delivery_dir(out, cfg.end_date), cutoff, cfg.locale.timezone)
    counters: dict[str, int] = {}
    spend = np.zeros((cfg.months * 31 + 31, len(CHANNEL_NAMES)))
    errors: list = []
    n_chunks = (cfg.customers + cfg.chunk_size - 1) // cfg.chunk_size
    for chunk in range(n_chunks):
        rng = np.random.default_rng([cfg.seed, chunk])
        start = chunk * cfg.chunk_size
        n = min(cfg.chunk_size, cfg.customers - start)
        _chunk(rng, cfg, start, n, bounds, w, counters, spend, _Dirt(rng, cfg.dirty_rate, errors), chunk)
    rng = np.random.default_rng([cfg.seed, 10**6])
    w.spend(_spend_table(rng, spend, bounds, cfg), _Dirt(rng, cfg.dirty_rate, errors))
    w.errors(errors)
    summary = GenerationSummary(cfg.customers, w.close())
    summary.seconds = (datetime.now() - t0).total_seconds()
    return summary


# sorted, for searchsorted; odds of converting per channel at the median deal size
LEAD_CHANNELS = np.array(["cold_call", "partner", "trade_fair", "webinar", "website_form"])
LEAD_CHANNEL_P = np.array([0.2, 0.15, 0.25, 0.15, 0.25])
LEAD_CHANNEL_ODDS = np.array([0.15, 0.9, 0.6, 1.1, 0.5])


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


def _next(counters: dict, name: str, n: int) -> int:
    start = counters.get(name, 1)
    counters[name] = start + n
    return start


def _chunk(rng, cfg: GeneratorConfig, start: int, n: int, bounds, w: "_Writers", counters, spend,
           dirt: _Dirt, chunk: int) -> None:
    persons = make_persons(rng, cfg, start, n, w.emails_taken)
    n = len(persons)
    sales = rng.random(n) < cfg.p_sales
    # A lead's source channel and deal size drive whether it converts (small deals from webinars
    # and partners close more often than big cold calls), so lead scoring has something to learn.
    lead_channel = rng.choice(LEAD_CHANNELS, size=n, p=LEAD_CHANNEL_P)
    lead_value = rng.lognormal(8, 0.8, size=n)
    odds = LEAD_CHANNEL_ODDS[np.searchsorted(LEAD_CHANNELS, lead_channel)] * np.exp(-0.6 * (np.log(lead_value) - 8))
    converted = sales & (rng.random(n) < odds / (1 + odds))
    b = simulate(rng, n, bounds, cfg.p_shop, cfg.p_newsletter, forced_customer=converted)
    end_ts = int(bounds[-1]) - 1
    truth_rows: list[tuple] = []

    # --- shop accounts: one per customer, a second for some ---------------------------------
    cust = np.flatnonzero(b.is_customer)
    dup = cust[rng.random(len(cust)) < cfg.p_duplicate_in_system]
    acc_p = np.concatenate([cust, dup])
    acc_created = np.concatenate([b.acquired_at[cust],
                                  b.acquired_at[dup] + (rng.random(len(dup)) * (end_ts - b.acquired_at[dup])).astype(np.int64)])
    acc_second = np.concatenate([np.zeros(len(cust), bool), np.ones(len(dup), bool)])
    perm = rng.permutation(len(acc_p))
    acc_p, acc_created, acc_second = acc_p[perm], acc_created[perm], acc_second[perm]
    acc_no = _ids("K", _next(counters, "shop", len(acc_p)), len(acc_p))
    first_acc = {}
    second_acc = {}
    known_email: dict[int, str] = {}   # the address the company holds for a person (survey invitations)
    for i, p in enumerate(acc_p):
        (second_acc if acc_second[i] else first_acc)[int(p)] = i
    rows = []
    for i, p in enumerate(acc_p):
        per = persons[p]
        per.systems.add("shop")
        email = per.alt_email if acc_second[i] else None
        # a shop phone field holds whichever number the person typed: often the mobile, sometimes
        # the household landline
        phone = per.landline if rng.random() < cfg.p_shop_landline else None
        ident = vary(rng, per, cfg, email=email, old=_is_old(rng, per), phone=phone)
        if ident.email and not acc_second[i]:
            known_email.setdefault(int(p), ident.email)
        updated = acc_created[i] + int(rng.random() * (end_ts - acc_created[i]))
        rows.append({
            "customer_no": acc_no[i], "salutation": {"f": "Frau", "m": "Herr"}[per.gender] if rng.random() < 0.8 else "",
            "first_name": ident.first, "last_name": ident.last, "email": ident.email, "phone": ident.phone,
            "street": ident.street, "zip": ident.postcode, "city": ident.city,
            "country": cfg.locale.country_value(rng),
            "birthday": ident.birth.isoformat() if ident.birth else "",
            "newsletter_optin": "1" if b.subscribed_at[p] >= 0 else "0",
            "created_at": int(acc_created[i]), "updated_at": updated})
        truth_rows.append(("shop_customers", acc_no[i], per.pid, "|".join(ident.variations + (["second_account"] if acc_second[i] else []))))
    w.shop_customers(rows, dirt)

    # --- orders: a person with two accounts uses the second one for some later orders -----------
    o = b.orders
    acct = np.array([first_acc.get(int(p), -1) for p in o["p"]], dtype=np.int64)
    has2 = np.array([int(p) in second_acc for p in o["p"]], bool)
    if has2.any():
        alt = np.array([second_acc.get(int(p), 0) for p in o["p"]])
        use2 = has2 & (o["t"] >= acc_created[alt]) & (rng.random(len(acct)) < 0.5)
        acct = np.where(use2, alt, acct)
    order_no = _ids("O", _next(counters, "order", len(acct)), len(acct), 9)
    w.orders(order_no, acc_no[acct], o, dirt)
    w.items(order_no, o["t"][b.items["order"]], b.items, dirt)

    # --- newsletter subscribers --------------------------------------------------------------
    subs = np.flatnonzero(b.subscribed_at >= 0)
    sdup = subs[rng.random(len(subs)) < cfg.p_duplicate_in_system]
    sub_p = np.concatenate([subs, sdup])
    sub_second = np.concatenate([np.zeros(len(subs), bool), np.ones(len(sdup), bool)])
    perm = rng.permutation(len(sub_p))
    sub_p, sub_second = sub_p[perm], sub_second[perm]
    sub_id = _ids("NL-", _next(counters, "newsletter", len(sub_p)), len(sub_p), 7)
    first_sub = {int(p): i for i, p in enumerate(sub_p) if not sub_second[i]}
    rows = []
    for i, p in enumerate(sub_p):
        per = persons[p]
        per.systems.add("newsletter")
        ident = vary(rng, per, cfg, email=per.alt_email if sub_second[i] else None, old=_is_old(rng, per))
        if not sub_second[i]:
            known_email.setdefault(int(p), ident.email or per.email)
        created = int(b.subscribed_at[p]) + (int(rng.integers(86400, 200 * 86400)) if sub_second[i] else 0)
        created = min(created, end_ts)
        named = rng.random() < 0.7
        rows.append({"Abonnent-ID": sub_id[i], "Anrede": {"f": "Frau", "m": "Herr"}[per.gender] if named else "",
                     "Vorname": ident.first if named else "", "Nachname": ident.last if named else "",
                     "E-Mail": ident.email or per.email,
                     "Geburtsdatum": ident.birth.strftime("%d.%m.%Y") if ident.birth and rng.random() < 0.4 else "",
                     "PLZ": ident.postcode if rng.random() < 0.6 else "", "Ort": ident.city if rng.random() < 0.6 else "",
                     "Angemeldet am": created, "Geändert am": created + int(rng.random() * (end_ts - created)),
                     "Einwilligung": "ja" if rng.random() < 0.97 else "nein"})
        truth_rows.append(("newsletter_subscribers", sub_id[i], per.pid, "|".join(ident.variations + (["second_signup"] if sub_second[i] else []))))
    w.subscribers(rows, dirt)
    e = b.emails
    keep = np.array([int(p) in first_sub for p in e["p"]], bool)
    w.email_events(_next(counters, "email_event", int(keep.sum())),
                   sub_id[np.array([first_sub[int(p)] for p in e["p"][keep]], dtype=np.int64)] if keep.any() else np.array([], str),
                   {k: v[keep] for k, v in e.items()}, bounds, dirt)

    # --- support desk: everyone who opened a ticket is a requester --------------------------
    t = b.tickets
    req_persons = np.unique(t["p"])
    rdup = req_persons[rng.random(len(req_persons)) < cfg.p_duplicate_in_system / 2]
    req_p = np.concatenate([req_persons, rdup])
    req_id = _ids("ZD", _next(counters, "support", len(req_p)), len(req_p), 7)
    req_of = {}
    rows = []
    for i, p in enumerate(req_p):
        per = persons[p]
        per.systems.add("support")
        req_of.setdefault(int(p), []).append(i)
        second = i >= len(req_persons)
        ident = vary(rng, per, cfg, email=per.alt_email if second else None)
        if ident.email:
            known_email.setdefault(int(p), ident.email)
        name = f"{ident.first} {ident.last}" if rng.random() < 0.8 else f"{ident.last}, {ident.first}"
        shop_no = acc_no[first_acc[int(p)]] if int(p) in first_acc and rng.random() < 0.4 else None
        first_ticket = int(t["opened"][t["p"] == p].min())
        rows.append({"id": req_id[i], "name": name, "email": ident.email or None,
                     "phone": ident.phone or None, "external_id": shop_no,
                     "created_at": first_ticket, "updated_at": first_ticket + int(rng.integers(0, 30 * 86400))})
        truth_rows.append(("support_requesters", req_id[i], per.pid, "|".join(ident.variations + (["second_account"] if second else []))))
    w.requesters(rows, dirt)
    tick_req = np.array([req_id[req_of[int(p)][int(rng.integers(0, len(req_of[int(p)])))]] for p in t["p"]], dtype=object)
    shop_for_ticket = np.array([acc_no[first_acc[int(p)]] if int(p) in first_acc and rng.random() < 0.5 else None
                                for p in t["p"]], dtype=object)
    w.tickets(_next(counters, "ticket", len(t["p"])), tick_req, shop_for_ticket, t, end_ts, rng, dirt)

    # --- sales CRM: B2B leads; converted leads became shop customers ---------------------------
    lead_p = np.flatnonzero(sales)
    lead_id = _ids("L-", _next(counters, "lead", len(lead_p)), len(lead_p), 6)
    rows = []
    for i, p in enumerate(lead_p):
        per = persons[p]
        per.systems.add("sales")
        company = str(rng.choice(N.COMPANIES))
        domain = company.split()[0].lower().translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})) + ".de"
        role = rng.random() < 0.15
        work = f"{per.first[0].lower()}.{per.last.lower().translate(str.maketrans({'ä': 'ae', 'ö': 'oe', 'ü': 'ue', 'ß': 'ss'}))}@{domain}"
        while w.work_email_owner.setdefault(work, per.pid) != per.pid:   # one mailbox, one person
            local, dom = work.split("@")
            work = f"{local}{int(rng.integers(0, 10))}@{dom}"
        ident = vary(rng, per, cfg, email=f"info@{domain}" if role else work,
                     phone=per.landline if rng.random() < 0.5 else None)
        conv = bool(converted[p])
        created = int(b.acquired_at[p]) - int(rng.integers(5, 90)) * 86400 if conv else \
            int(bounds[0] + rng.random() * (end_ts - bounds[0]))
        stage = "won" if conv else str(rng.choice(["new", "contacted", "qualified", "proposal", "lost"],
                                                  p=[0.2, 0.2, 0.2, 0.1, 0.3]))
        rows.append({"lead_id": lead_id[i], "company": company, "contact_first_name": ident.first,
                     "contact_last_name": ident.last, "contact_email": ident.email, "contact_phone": ident.phone,
                     "city": ident.city, "stage": stage,
                     "expected_value": f"{float(lead_value[p]):.2f}",
                     "source_channel": str(lead_channel[p]),
                     "created_at": max(created, int(bounds[0])),
                     "converted_at": int(b.acquired_at[p]) if conv else -1,
                     "customer_no": acc_no[first_acc[int(p)]] if conv and int(p) in first_acc else ""})
        truth_rows.append(("sales_lead_contacts", lead_id[i], per.pid, "|".join(ident.variations + (["role_email"] if role else []))))
    w.leads(rows, dirt)

    # --- NPS survey: the invitation goes to an address the company holds for the person (shop
    # account first, then newsletter, then support desk); the answer carries it, often a name ------
    nps = b.nps
    resp_id = _ids("R", _next(counters, "nps", len(nps["p"])), len(nps["p"]), 8)
    rows = []
    for i, p in enumerate(nps["p"]):
        per = persons[p]
        per.systems.add("nps")
        invited = known_email.get(int(p), per.email)
        ident = vary(rng, per, cfg, email=invited)
        score = int(nps["score"][i])
        bucket = "low" if score <= 6 else "mid" if score <= 8 else "high"
        rows.append({"response_id": resp_id[i], "email": invited,
                     "name": f"{ident.first} {ident.last}" if rng.random() < 0.5 else "",
                     "customer_no": acc_no[first_acc[int(p)]] if int(p) in first_acc and rng.random() < 0.3 else "",
                     "submitted_at": int(nps["t"][i]), "score": str(score),
                     "comment": str(rng.choice(N.NPS_COMMENTS[bucket]))})
        truth_rows.append(("nps_respondents", resp_id[i], per.pid, "|".join(ident.variations)))
    w.nps(rows, dirt)

    # --- web analytics: one cookie per person; events after login carry the customer number -----
    wb = b.web
    visitor = np.char.add("V", np.char.zfill((np.arange(start, start + n) * 7919 % 100_000_003).astype(str), 9))
    logged = wb["login"] & np.array([int(p) in first_acc for p in wb["p"]], bool)
    cust_ref = np.where(logged, np.array([acc_no[first_acc[int(p)]] if int(p) in first_acc else "" for p in wb["p"]], dtype=object), None)
    w.web(chunk, _next(counters, "web", len(wb["p"])), visitor[wb["p"]], cust_ref, wb, dirt)

    # --- truth ----------------------------------------------------------------------------------
    for d in range(len(b.acquired_at)):
        if b.acquired_at[d] >= 0:
            day = int((b.acquired_at[d] - bounds[0]) // 86400)
            spend[min(day, spend.shape[0] - 1), b.channel[d]] += 1
    w.truth_records(truth_rows)
    w.truth_persons(persons, b)


# the UTM source a visit from each channel carries (None: no tag), and the spend channel behind it
UTM = {"direct": None, "organic_search": "organic_search", "referral": "referral", "newsletter": "newsletter",
       "email": "newsletter", "paid_search": "paid_search", "social": "social", "display": "display",
       "affiliate": "affiliate", "sales": None}
PAID = {"newsletter": "email", "paid_search": "paid_search", "social": "social", "display": "display",
        "affiliate": "affiliate"}


def _utm(codes: np.ndarray, ts: np.ndarray) -> dict:
    """utm_source / utm_campaign on a session's landing event; campaigns of paid channels are
    named like the marketing spend's (channel-YYYY-MM)."""
    codes = np.asarray(codes, dtype=np.int64)
    source = np.full(len(codes), None, dtype=object)
    for code in np.unique(codes):
        if code == NO_SOURCE:
            continue
        name = VISIT_SOURCES[code] if code >= 0 else CHANNEL_NAMES[-1 - code]
        source[codes == code] = UTM[name]
    month = np.datetime_as_string(ts.astype("datetime64[M]"))
    paid = np.array([s in PAID for s in source], dtype=bool)
    spend = np.array([PAID.get(s, "") for s in source], dtype=object)
    campaign = np.where(paid, np.char.add(np.char.add(spend.astype(str), "-"), month), None)
    return {"utm_source": pa.array(source, pa.string()), "utm_campaign": pa.array(campaign, pa.string())}


def _is_old(rng, per: Person) -> bool:
    return bool((per.maiden or per.old_address) and rng.random() < 0.4)


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


class _Writers:
    """The landing files; with a ``cutoff`` (epoch seconds), rows created at or after it go to the
    same-named files of the delivery folder instead."""

    def __init__(self, landing: Path, truth: Path, delivery: Path | None = None, cutoff: int | None = None,
                 tz: str = BERLIN):
        self.landing, self.truth, self.tz = landing, truth, tz      # local times are written in tz
        self.delivery, self.cutoff = delivery, cutoff
        self.later: dict[str, _Csv] = {}
        self.later_jsonl: dict[str, object] = {}
        self.emails_taken: set[str] = set()   # a mailbox belongs to one person
        self.work_email_owner: dict[str, str] = {}
        self.files = {
            "shop_customers": _Csv(landing / "shop" / "customers.csv"),
            "shop_orders": _Csv(landing / "shop" / "orders.csv"),
            "shop_order_items": _Csv(landing / "shop" / "order_items.csv"),
            "newsletter_subscribers": _Csv(landing / "newsletter" / "abonnenten.csv", ";", "cp1252"),
            "newsletter_email_events": _Csv(landing / "newsletter" / "email_events.csv"),
            "sales_leads": _Csv(landing / "sales" / "leads.csv"),
            "nps_responses": _Csv(landing / "nps" / "responses.csv"),
            "marketing_spend": _Csv(landing / "marketing" / "spend.csv"),
            "truth_records": _Csv(truth / "contact_records.csv"),
            "truth_persons": _Csv(truth / "persons.csv"),
        }
        (landing / "support").mkdir(parents=True, exist_ok=True)
        (landing / "web").mkdir(parents=True, exist_ok=True)
        self.jsonl = {"support_requesters": (landing / "support" / "requesters.jsonl").open("w", encoding="utf-8"),
                      "support_tickets": (landing / "support" / "tickets.jsonl").open("w", encoding="utf-8")}
        self.counts: dict[str, int] = {}
        self.web_rows = 0

    def _delivered(self, path: Path) -> Path:
        rel = path.relative_to(self.landing)
        return self.delivery / rel.parent / f"{rel.stem}-{self.delivery.name}{rel.suffix}"

    def _late(self, when) -> np.ndarray | None:
        if self.cutoff is None:
            return None
        late = np.asarray(when, dtype=np.int64) >= self.cutoff
        return late if late.any() else None

    def _write(self, name: str, table: pa.Table, when) -> None:
        """One landing CSV's rows: the history to ``landing/``, the delivery days to the delivery."""
        late = self._late(when)
        if late is None:
            self.files[name].write(table)
            return
        self.files[name].write(table.filter(pa.array(~late)))
        if name not in self.later:
            base = self.files[name]
            self.later[name] = _Csv(self._delivered(base.path), base.delimiter, base.encoding)
        self.later[name].write(table.filter(pa.array(late)))

    def _jsonl(self, name: str, when: int, record: dict) -> None:
        """One JSON line to the landing file, or to the delivery's when created after the cutoff."""
        if self.cutoff is None or when < self.cutoff:
            fh = self.jsonl[name]
        else:
            if name not in self.later_jsonl:
                path = self._delivered(Path(self.jsonl[name].name))
                path.parent.mkdir(parents=True, exist_ok=True)
                self.later_jsonl[name] = path.open("w", encoding="utf-8")
            fh, name = self.later_jsonl[name], f"delivery/{name}"
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.counts[name] = self.counts.get(name, 0) + 1

    def _table(self, rows: list[dict], ts_cols: dict[str, str]) -> pa.Table:
        if not rows:
            return None
        cols = {k: [r[k] for r in rows] for k in rows[0]}
        out = {}
        for k, v in cols.items():
            out[k] = _fmt(np.array(v, dtype=np.int64), ts_cols[k], self.tz) if k in ts_cols else \
                pa.array([None if x in ("", None) else str(x) for x in v], pa.string())
        return pa.table(out)

    def shop_customers(self, rows, dirt):
        t = self._table(rows, {"created_at": "%Y-%m-%d %H:%M:%S", "updated_at": "%Y-%m-%d %H:%M:%S"})
        if t is not None:
            t = dirt.apply("shop_customers", t, "customer_no", [
                ("customer_no", "missing_required", ""), ("email", "malformed_email", "max.mustermann(at)web.de"),
                ("birthday", "unparseable_date", "31.02.1985"), ("created_at", "future_timestamp", "2031-01-01 10:00:00"),
                ("created_at", "unparseable_date", "gestern")])
            self._write("shop_customers", t, [r["created_at"] for r in rows])

    def orders(self, order_no, customer_no, o, dirt):
        t = pa.table({"order_no": order_no, "customer_no": customer_no,
                      "order_date": _fmt(o["t"], "%Y-%m-%d %H:%M:%S", self.tz),
                      "status": ORDER_STATUS[o["status"]], "channel": ORDER_CHANNEL[o["channel"]],
                      "currency": np.full(len(order_no), "EUR"),
                      "total": np.char.mod("%.2f", o["total"]), "discount": np.char.mod("%.2f", o["discount"]),
                      "shipping": np.char.mod("%.2f", o["shipping"]),
                      "coupon": np.where(o["coupon"], "SAVE", "")})
        t = dirt.apply("shop_orders", t, "order_no", [
            ("total", "negative_amount", "-12.50"), ("order_date", "future_timestamp", "2031-05-01 10:00:00"),
            ("order_date", "unparseable_date", "32.13.2024"), ("customer_no", "missing_required", "")])
        self._write("shop_orders", t, o["t"])

    def items(self, order_no, ordered_at, it, dirt):
        t = pa.table({"order_no": order_no[it["order"]], "pos": it["line"].astype(str),
                      "sku": np.char.add(np.char.add(CATS[it["category"]], "-"),
                                         (np.round(it["price"]) % 97).astype(int).astype(str)),
                      "product_name": np.char.add("Artikel ", (np.round(it["price"]) % 97).astype(int).astype(str)),
                      "category": CATS[it["category"]], "qty": it["qty"].astype(str),
                      "unit_price": np.char.mod("%.2f", it["price"]),
                      "returned": np.where(it["returned"], "1", "0"),
                      "returned_at": _fmt(it["returned_at"], "%Y-%m-%d %H:%M:%S", self.tz)})
        t = dirt.apply("shop_order_items", t, "order_no", [
            ("qty", "below_minimum", "0"), ("unit_price", "unparseable_number", "zwölf")])
        self._write("shop_order_items", t, ordered_at)

    def subscribers(self, rows, dirt):
        t = self._table(rows, {"Angemeldet am": "%d.%m.%Y %H:%M", "Geändert am": "%d.%m.%Y %H:%M"})
        if t is not None:
            t = dirt.apply("newsletter_subscribers", t, "Abonnent-ID", [
                ("E-Mail", "malformed_email", "anna.schmidt@@gmx"), ("Geburtsdatum", "unparseable_date", "30.02.1980"),
                ("Angemeldet am", "future_timestamp", "01.01.2031 10:00")])
            self._write("newsletter_subscribers", t, [r["Angemeldet am"] for r in rows])

    def email_events(self, first_id, sub_ids, e, bounds, dirt):
        n = len(sub_ids)
        month = e["campaign"].astype(int)
        camp = np.char.add("NL-", np.char.zfill(month.astype(str), 3))
        t = pa.table({"event_id": _ids("M", first_id, n, 10), "subscriber_id": sub_ids,
                      "campaign_id": camp, "event": EMAIL_TYPES[e["type"].astype(int)],
                      "timestamp": _fmt(e["t"], "%Y-%m-%dT%H:%M:%S+00:00", None)})
        t = dirt.apply("newsletter_email_events", t, "event_id", [
            ("event", "not_allowed", "geoeffnet"), ("timestamp", "unparseable_date", "n/a")])
        self._write("newsletter_email_events", t, e["t"])

    def requesters(self, rows, dirt):
        bad = set(dirt.rows(len(rows)).tolist())
        for i, r in enumerate(rows):
            created = r["created_at"]
            r = dict(r)
            for k in ("created_at", "updated_at"):
                r[k] = datetime.fromtimestamp(r[k], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ").replace("Z", "+00:00")
            if i in bad:
                r["created_at"] = "unknown"
                dirt.log.append(("support_requesters", r["id"], "created_at", "unparseable_date"))
            self._jsonl("support_requesters", created, r)

    def tickets(self, first_id, req_ids, shop_nos, t, end_ts, rng, dirt):
        bad = set(dirt.rows(len(req_ids)).tolist())
        iso = lambda s: datetime.fromtimestamp(int(s), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        for i in range(len(req_ids)):
            closed = int(t["closed"][i])
            if closed > end_ts:
                closed = -1
            rec = {"id": f"T{first_id + i:08d}", "requester_id": req_ids[i], "external_id": shop_nos[i],
                   "created_at": iso(t["opened"][i]), "solved_at": iso(closed) if closed >= 0 else None,
                   "status": "solved" if closed >= 0 else str(rng.choice(["open", "pending"])),
                   "priority": str(PRIORITY[t["priority"][i]]),
                   "type": N.TICKET_CATEGORIES[int(t["category"][i])],
                   "escalated": bool(t["escalated"][i]),
                   "satisfaction_rating": {"score": int(t["satisfaction"][i])} if t["satisfaction"][i] > 0 else None}
            if i in bad:
                rec["priority"] = "sofort"
                dirt.log.append(("support_tickets", rec["id"], "priority", "not_allowed"))
            self._jsonl("support_tickets", int(t["opened"][i]), rec)

    def leads(self, rows, dirt):
        t = self._table(rows, {"created_at": "%Y-%m-%d %H:%M:%S", "converted_at": "%Y-%m-%d %H:%M:%S"})
        if t is not None:
            t = dirt.apply("sales_leads", t, "lead_id", [
                ("expected_value", "negative_amount", "-500.00"), ("stage", "not_allowed", "verloren")])
            self._write("sales_leads", t, [r["created_at"] for r in rows])

    def nps(self, rows, dirt):
        t = self._table(rows, {"submitted_at": "%Y-%m-%d %H:%M:%S"})
        if t is not None:
            t = dirt.apply("nps_responses", t, "response_id", [
                ("score", "above_maximum", "11"), ("score", "unparseable_number", "zehn")])
            self._write("nps_responses", t, [r["submitted_at"] for r in rows])

    def web(self, chunk, first_id, visitors, cust_ref, wb, dirt):
        n = len(visitors)
        ts = wb["t"].astype("datetime64[s]")
        future = dirt.rows(n)
        ts[future] = np.datetime64("2031-06-01T12:00:00")
        for i in future:
            dirt.log.append(("web_events", f"E{first_id + i:010d}", "ts", "future_timestamp"))
        t = pa.table({
            "event_id": _ids("E", first_id, n, 10), "visitor_id": visitors,
            "customer_no": pa.array(cust_ref, pa.string()),
            "session_id": np.char.add(f"S{chunk:05d}-", wb["session"].astype(str)),
            "ts": pa.array(ts, pa.timestamp("s")),
            "event_type": WEB_TYPES[wb["type"].astype(int)],
            "url": np.char.add("/c/", CATS[wb["category"]]),
            "sku": np.where(wb["type"] >= 1, np.char.add(CATS[wb["category"]], "-1"), None),
            "category": CATS[wb["category"]],
            **_utm(wb["source"], ts)})
        path = self.landing / "web" / f"events_part-{chunk:05d}.parquet"
        late = self._late(wb["t"])
        if late is None:
            pq.write_table(t, path)
        else:
            pq.write_table(t.filter(pa.array(~late)), path)
            later = self._delivered(path)
            later.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t.filter(pa.array(late)), later)
            self.counts["delivery/web_events"] = self.counts.get("delivery/web_events", 0) + int(late.sum())
            n -= int(late.sum())
        self.web_rows += n

    def spend(self, table, dirt):
        table = dirt.apply("marketing_spend", table, "campaign", [("amount_eur", "negative_amount", "-100.00")])
        day = pc.strptime(table.column("date"), format="%Y-%m-%d", unit="s")
        self._write("marketing_spend", table, pc.cast(day, pa.int64()).to_numpy())

    def errors(self, errors):
        with (self.truth / "injected_errors.csv").open("w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["dataset", "record_id", "column", "kind"])
            wr.writerows(errors)

    def truth_records(self, rows):
        if rows:
            self.files["truth_records"].write(pa.table({
                "dataset": [r[0] for r in rows], "source_record_id": [str(r[1]) for r in rows],
                "person_id": [r[2] for r in rows], "variations": [r[3] for r in rows]}))

    def truth_persons(self, persons: list[Person], b: Behaviour):
        self.files["truth_persons"].write(pa.table({
            "person_id": [p.pid for p in persons], "household_id": [p.household_id for p in persons],
            "twin_group": [p.twin_group or None for p in persons],
            "first_name": [p.first for p in persons], "last_name": [p.last for p in persons],
            "maiden_name": [p.maiden or None for p in persons],
            "birth_date": [p.birth.isoformat() for p in persons], "city": [p.city for p in persons],
            "moved": [p.old_address is not None for p in persons],
            "systems": ["|".join(sorted(p.systems)) for p in persons],
            "is_customer": b.is_customer, "acquisition_channel": np.array(CHANNEL_NAMES)[b.channel],
            "acquired_at": _fmt(b.acquired_at, "%Y-%m-%dT%H:%M:%S+00:00", None),
            "churned_at": _fmt(b.churned_at, "%Y-%m-%dT%H:%M:%S+00:00", None)}))

    def close(self) -> dict[str, int]:
        for name, f in self.files.items():
            f.close()
            self.counts[name] = f.rows
        for name, f in self.later.items():
            f.close()
            self.counts[f"delivery/{name}"] = f.rows
        for fh in [*self.jsonl.values(), *self.later_jsonl.values()]:
            fh.close()
        self.counts["web_events"] = self.web_rows
        return self.counts
